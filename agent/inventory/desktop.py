"""Desktop launchers (XDG .desktop entries), system-wide and per user.

Apps unpacked into /opt, AppImages in a home folder and tarball installs appear in no package
database, but a user who wants to start them usually has a launcher: each entry gives a display
name and the executable it starts, which the matcher checks against `names` and `executables`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from agent.inventory import dpkg
from agent.inventory.base import Collected, Context, home_dirs, record_error
from agent.inventory.preconditions import rpm_dbpath
from agent.inventory.reading import exists, folder_entries, read_text
from agent.log import log_event
from agent.model import App
from agent.runner import CommandError

logger = logging.getLogger(__name__)

SYSTEM_DIRS = (
    "/usr/share/applications",
    "/usr/local/share/applications",
    "/var/lib/flatpak/exports/share/applications",
    "/var/lib/snapd/desktop/applications",
)
USER_DIRS = (".local/share/applications", ".local/share/flatpak/exports/share/applications", "Desktop")
BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
SNAP_DESKTOP_DIR = "/var/lib/snapd/desktop/applications"
_ENV_OPTIONS_WITH_VALUE = frozenset({"-u", "--unset", "-C", "--chdir"})


def parse_desktop_entry(text: str) -> dict[str, str]:
    """Return the keys of the `[Desktop Entry]` group (unlocalized keys only)."""
    keys: dict[str, str] = {}
    in_group = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            in_group = line == "[Desktop Entry]"
            continue
        if in_group and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), value.strip())
    return keys


def exec_program(exec_line: str) -> str:
    """Return the program an Exec= line starts, skipping `env VAR=…` and field codes like %U."""
    words = [w for w in exec_words(exec_line) if not (len(w) == 2 and w.startswith("%"))]
    if words and os.path.basename(words[0]) == "env":
        rest = iter(words[1:])
        for word in rest:
            if word in _ENV_OPTIONS_WITH_VALUE:
                next(rest, None)  # `env -u NAME`: NAME is the option's value, not the program
            elif "=" not in word and not word.startswith("-"):
                return word
        return ""
    return words[0] if words else ""


def exec_words(exec_line: str) -> list[str]:
    """Return the words of an Exec= line as `shlex.split` gives them (split where unbalanced).

    Why not always shlex: a line with no quote and no backslash has nothing to unquote, and
    shlex's split of it is a split at its whitespace (space, tab, CR, LF); most launchers' lines
    are such, and importing shlex was ~0.65 M instructions of every full check.
    """
    if _SHELL_QUOTING.isdisjoint(exec_line):
        return [word for word in exec_line.translate(_SHELL_SPACE).split(" ") if word]
    import shlex

    try:
        return shlex.split(exec_line)
    except ValueError:
        return exec_line.split()


_SHELL_QUOTING = frozenset("'\"\\")
"""What shlex (POSIX mode, no comments) unquotes: quotes and the backslash."""
_SHELL_SPACE = str.maketrans("\t\r\n", "   ")
"""shlex's whitespace, as spaces."""


def resolve_program(ctx: Context, program: str) -> str:
    """Return the program's absolute path as seen on the device (searching the usual bin folders
    inside the root), or the bare name when it cannot be found."""
    if not program or os.path.isabs(program):
        return program
    for folder in BIN_DIRS:
        if exists(ctx.path(f"{folder}/{program}"), root=ctx.root):
            return f"{folder}/{program}"
    return program


def exported_by(keys: dict[str, str], launcher: str) -> str:
    """Return `source:id` of the Flatpak or snap that exported this launcher, or "".

    flatpak adds `X-Flatpak=<app id>` to every launcher it exports, snapd adds
    `X-SnapInstanceName=<instance>` (older snapd only names the file `<instance>_<app>.desktop`).
    """
    if keys.get("X-Flatpak"):
        return f"flatpak:{keys['X-Flatpak']}"
    if keys.get("X-SnapInstanceName"):
        return f"snap:{keys['X-SnapInstanceName']}"
    folder, _, name = launcher.rpartition("/")
    if folder == SNAP_DESKTOP_DIR and "_" in name:
        return f"snap:{name.partition('_')[0]}"
    return ""


def _entry_app(ctx: Context, path: Path, user: str) -> App | None:
    keys = parse_desktop_entry(read_text(path, root=ctx.root))
    if keys.get("Type", "Application") != "Application" or not keys.get("Name"):
        return None
    program = resolve_program(ctx, exec_program(keys.get("Exec", "")) or keys.get("TryExec", ""))
    launcher = "/" + str(path.relative_to(ctx.root)).lstrip("/")
    owner = exported_by(keys, launcher)
    return App(
        source="desktop", id=path.name.removesuffix(".desktop"), name=keys["Name"],
        version=keys.get("X-AppImage-Version", ""), path=program, user=user,
        extra=(("launcher", launcher), ("owner", owner)) if owner else (("launcher", launcher),),
    )


def with_package_owners(ctx: Context, apps: list[App]) -> list[App]:
    """Return `apps` with `owner` set to `dpkg:<package>` or `rpm:<package>` for each launcher
    that a package installed, or whose executable a package installed, so the inventory can
    fold the launcher into that package's record instead of counting the app twice."""
    unowned = [app for app in apps if not app.extra_value("owner")]
    paths = dict.fromkeys(app.extra_value("launcher") for app in unowned)
    owners = {path: f"dpkg:{pkg}" for path, pkg in dpkg.path_owners(ctx, paths).items()}
    # An executable decides only for a launcher no package installed; asking dpkg about it
    # after the launchers (not with them) lets the list scan stop early when every launcher is
    # placed, as system launchers are, while an alternatives link (/usr/bin/vim) is no one's.
    programs = dict.fromkeys(app.path for app in unowned if app.extra_value("launcher") not in owners
                             and os.path.isabs(app.path) and not app.path.startswith("/home/"))
    owners.update((path, f"dpkg:{pkg}") for path, pkg in dpkg.path_owners(ctx, programs).items())
    paths.update(programs)
    if rpm_dbpath(ctx) is not None:
        from agent.inventory import rpm  # where there is an rpm database: most machines have none

        existing = [p for p in paths if p not in owners and exists(ctx.path(p), root=ctx.root)]
        try:
            owners.update((path, f"rpm:{pkg}") for path, pkg in rpm.path_owners(ctx, existing).items())
        except CommandError as exc:
            log_event(logger, logging.WARNING, "desktop.rpm_owner_unknown", error=str(exc))
    owned = []
    for app in apps:
        owner = owners.get(app.extra_value("launcher")) or owners.get(app.path)
        if owner and not app.extra_value("owner"):
            app = replace(app, extra=tuple(sorted((*app.extra, ("owner", owner)))))
        owned.append(app)
    return owned


class DesktopCollector:
    """Launchers in the system's and every user's application folders."""

    name = "desktop"
    live_only = False

    def unavailable(self, ctx: Context) -> str | None:
        there = any(exists(folder, root=ctx.root, folder=True) for folder, _ in _folders(ctx))
        return None if there else "no applications folder"

    def collect(self, ctx: Context) -> Collected:
        result = Collected()
        for folder, user in _folders(ctx):
            try:
                names = [name for name, _ in folder_entries(folder, root=ctx.root) if name.endswith(".desktop") and not name.startswith(".")]
            except (FileNotFoundError, NotADirectoryError):  # no such folder here: what `exists` says no to
                continue
            except OSError as exc:
                result.errors.append(record_error(self.name, folder, exc))
                continue
            for path in (folder / name for name in names):
                try:
                    app = _entry_app(ctx, path, user)
                except Exception as exc:  # noqa: BLE001 - one bad launcher is one error, the others still count
                    result.errors.append(record_error(self.name, path, exc))
                    continue
                if app is not None:
                    result.apps.append(app)
        result.apps = with_package_owners(ctx, result.apps)
        return result


def _folders(ctx: Context) -> list[tuple[Path, str]]:
    """Return (folder, user) of every launcher folder, whether it is there or not: collecting
    skips one that is not (as `exists` would have), so nothing is looked up twice."""
    folders = [(ctx.path(d), "") for d in SYSTEM_DIRS]
    return folders + [(home / d, user) for user, home in home_dirs(ctx) for d in USER_DIRS]
