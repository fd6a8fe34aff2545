"""What a collector needs before it can run at all, checked without importing the collector.

A check with no `--source` asks every registered collector whether it can run here. Importing
the Windows, macOS, phone and MDM collectors only to hear "not this system", "gateway mode is
off" or "not configured" cost a Linux check about a quarter of its instructions, and importing
the rpm, flatpak, pacman, apk and snap collectors to hear "no database here" ~1-2 % of it, so those first
answers live here, in a module that imports nothing heavy: the registry (agent/inventory) asks
them before it imports a collector that was not asked for by name, and each collector's
`unavailable` starts with the same function, so the two cannot disagree.
"""

from __future__ import annotations

import sys

from agent.inventory.base import home_dirs
from agent.inventory.reading import exists

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Callable

    from agent.inventory.base import Context

    Precondition = Callable[[Context], str | None]
    """Return why a collector cannot run in this context, or None when it might (a type for
    checkers only: made at run time it would compile its forward references at every start)."""


def running_system(platform: str, label: str) -> Precondition:
    """A collector of an OS's own records: on the running system only that OS has them; a
    mounted volume (--root) is the collector's own question."""

    def check(ctx: Context) -> str | None:
        if ctx.live and sys.platform != platform:
            return f"not a {label} system (use --root DIR for a mounted {label} volume)"
        return None

    return check


def gateway_mode(ctx: Context) -> str | None:
    """The phone collectors run only on a host configured as a gateway."""
    return None if ctx.config.gateway.enabled else "gateway mode is off (set gateway.enabled: true)"


def mdm_configured(name: str) -> Precondition:
    """An MDM connector runs only when its `mdm.<name>` block is configured."""

    def check(ctx: Context) -> str | None:
        return None if getattr(ctx.config.mdm, name) is not None else f"mdm.{name} is not configured"

    return check


def database_at(what: str, path: str, *, folder: bool = False, mounts: tuple[str, ...] = ()) -> Precondition:
    """A collector that reads a package manager's database at `path` (a folder when `folder`)
    under the root; one of `mounts` being a folder there also lets it run."""

    def check(ctx: Context) -> str | None:
        if exists(ctx.path(path), root=ctx.root, folder=folder) or any(
                exists(ctx.path(mount), root=ctx.root, folder=True) for mount in mounts):
            return None
        return f"no {what} at {ctx.path(path)}"

    return check


def flatpak_installation(ctx: Context) -> str | None:
    """The flatpak collector reads installations: the system's, those declared in
    FLATPAK_INSTALLATIONS_CONF (read by the collector, so their folder being there is enough
    here) and the users'; each counts when its `app` folder is there."""
    if exists(ctx.path(FLATPAK_INSTALLATIONS_CONF), root=ctx.root, folder=True):
        return None
    folders = [ctx.path(FLATPAK_SYSTEM_DIR), *(home / FLATPAK_USER_DIR for _, home in home_dirs(ctx))]
    if any(exists(folder / "app", root=ctx.root, folder=True) for folder in folders):
        return None
    return NO_FLATPAK


def rpm_dbpath(ctx: Context) -> str | None:
    """Return the rpm database folder (as a path on the device) under the root, or None.

    Why here and not in agent.inventory.rpm: besides the rpm collector, the desktop collector and
    enforcement's evidence ask it (can rpm place a file?), and a full check asks it before
    importing the collector; on most machines the answer is "none".
    """
    for folder in RPM_DB_DIRS:
        if any(ctx.path(f"{folder}/{name}").exists() for name in RPM_DB_FILES):
            return folder
    return None


def rpm_database(ctx: Context) -> str | None:
    """The rpm collector reads the database `rpm_dbpath` finds."""
    if rpm_dbpath(ctx) is None:
        return f"no rpm database under {ctx.path(RPM_DB_DIRS[0])} or {ctx.path(RPM_DB_DIRS[1])}"
    return None


NO_FLATPAK = "no flatpak installation"
FLATPAK_SYSTEM_DIR = "/var/lib/flatpak"
FLATPAK_USER_DIR = ".local/share/flatpak"
"""A user's installation, in their home folder."""
FLATPAK_INSTALLATIONS_CONF = "/etc/flatpak/installations.d"
RPM_DB_DIRS = ("/usr/lib/sysimage/rpm", "/var/lib/rpm")
"""Where the rpm database lives: newer Fedora and openSUSE, then elsewhere; the first that holds
a database file wins."""
RPM_DB_FILES = ("rpmdb.sqlite", "Packages", "Packages.db")
PACMAN_DB = "/var/lib/pacman/local"
APK_INSTALLED = "/lib/apk/db/installed"
SNAP_STATE = "/var/lib/snapd/state.json"
SNAP_MOUNTS = ("/snap", "/var/lib/snapd/snap")
PACMAN = database_at("pacman database", PACMAN_DB, folder=True)
APK = database_at("apk database", APK_INSTALLED)
SNAP = database_at("snapd state", SNAP_STATE, mounts=SNAP_MOUNTS)

WINDOWS = running_system("win32", "Windows")
MACOS = running_system("darwin", "macOS")
