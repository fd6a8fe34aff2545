"""Which files an installed app owns, looked up per App and on demand.

Blocking needs the executables of one banned package, not the file lists of every package, so
the lists stay in each package manager's database until asked for here.
"""

from __future__ import annotations

from typing import Callable

from agent.inventory import apk, dpkg, pacman, rpm
from agent.inventory.base import Context
from agent.model import App

FILE_LISTS: dict[str, Callable[[Context, App], list[str]]] = {
    "dpkg": dpkg.app_files, "rpm": rpm.app_files, "pacman": pacman.app_files, "apk": apk.app_files,
}
"""source → its lister, for every source whose facts (agent.sources) say `file_list`."""


def app_files(ctx: Context, app: App) -> list[str] | None:
    """Given an App, return the paths (on the device) its package installed, or None when its
    source keeps no file list (a Flatpak, snap or AppImage is one folder or file: `app.path`).

    Raise OSError if the database cannot be read, CommandError if `rpm` fails.
    """
    lookup = FILE_LISTS.get(app.source)
    return None if lookup is None else lookup(ctx, app)
