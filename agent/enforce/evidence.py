"""Evidence and authority: when a path found on the system may become the target of a root action.

A path read from a place a user can write (a file found in a home folder, a launcher's `Exec=`,
a plist) is evidence for a report. It becomes the target of a move into quarantine only when,
after full resolution (symlinks, `..`, `//`, `/./`), it is still where it was found to be
writable by its owner alone:

- found in a user's home: it lies inside that same user's home, and that user owns it;
- found in a system folder (no user): it lies inside one of `SYSTEM_INSTALL_DIRS`;
- in both cases no package owns it (its package is what gets removed) and it has no other hard
  link (a link would move a file that also lives elsewhere).

`examine` gathers the facts with I/O; `target_refusal` decides from them alone, so the planner
stays pure and every rule is tested without a machine. The check is repeated just before the
move (`act.py`), so what changed since the scan is judged again.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Iterable

from agent.inventory import dpkg, rpm
from agent.inventory.base import Context
from agent.inventory.preconditions import rpm_dbpath
from agent.log import log_event
from agent.model import App
from agent.runner import CommandError, Runner

logger = logging.getLogger(__name__)

SYSTEM_INSTALL_DIRS = ("/opt", "/usr/local/bin", "/Applications")
"""Folders only root can write where a system-wide unpackaged install (an AppImage, a .app
bundle) is found by the scan; nothing outside them is taken for a user-less finding."""


@dataclass(frozen=True)
class PathFacts:
    """What the system says about one candidate target (device paths, as seen under the root)."""

    resolved: str = ""
    """The path after every symlink and `..` is resolved; "" when nothing is there."""
    outside_root: bool = False
    """Resolution left the system acted on (an absolute symlink out of a mounted tree)."""
    uid: int = -1
    links: int = 1
    inode: tuple[int, int] = (-1, -1)
    """(device, inode) of the resolved path: the move takes this very file or nothing."""
    home: str = ""
    """The resolved home folder of the app's user; "" when the user has none under the root."""
    home_uid: int = -1
    package: str = ""
    """`dpkg:NAME` or `rpm:NAME` when a package owns the resolved path."""


def inside(path: str, folder: str) -> bool:
    """Return True when `path` lies strictly inside `folder` (whole path components, both already
    resolved): `/home/al/x` is inside `/home/al`, `/home/alice` is not."""
    return path != folder and PurePosixPath(path).is_relative_to(folder)


def target_refusal(app: App, seen: PathFacts | None) -> str:
    """Given an app found by a scan and what `examine` saw of its path, return why the path must
    not be moved by root, or "" when it may (see the module docstring for the rule)."""
    if seen is None:
        return "its path was not examined"
    if seen.outside_root:
        return f"{app.path} resolves outside the system acted on"
    if not seen.resolved:
        return f"{app.path} not found"
    if seen.package:
        return f"{seen.resolved} belongs to package {seen.package}; the package is what gets removed"
    if app.user:
        if not seen.home:
            return f"user {app.user!r} has no home folder here, so {seen.resolved} cannot be theirs"
        if not inside(seen.resolved, seen.home):
            return f"{app.path} resolves to {seen.resolved}, outside {app.user}'s home {seen.home}"
        if seen.uid != seen.home_uid:
            return f"{seen.resolved} is owned by uid {seen.uid}, not by {app.user} (uid {seen.home_uid})"
    elif not any(inside(seen.resolved, folder) for folder in SYSTEM_INSTALL_DIRS):
        return f"{app.path} resolves to {seen.resolved}, outside {', '.join(SYSTEM_INSTALL_DIRS)}"
    if seen.links > 1:
        return f"{seen.resolved} has {seen.links} hard links; moving it would take a file that lives elsewhere too"
    return ""


def examine(root: str, app: App, runner: Runner | None = None) -> PathFacts:
    """Given the root acted on and an app whose `path` may be moved, return what the system says
    about that path: where it really leads, who owns it, the user's home, any owning package."""
    return examine_all(root, [app], runner)[app.path]


def examine_all(root: str, apps: Iterable[App], runner: Runner | None = None) -> dict[str, PathFacts]:
    """Return {app.path: PathFacts} for many apps, asking the package databases once for all."""
    base = os.path.realpath(root)
    seen = {app.path: _resolve(base, app) for app in apps}
    asked = sorted({p for path, facts in seen.items() if facts.resolved for p in (facts.resolved, path)})
    owners = _owners(Context(root=Path(base), live=False, runner=runner or Runner()), asked)
    return {path: replace(facts, package=owners.get(facts.resolved) or owners.get(path, "")) if facts.resolved else facts
            for path, facts in seen.items()}


def _resolve(base: str, app: App) -> PathFacts:
    real = os.path.realpath(os.path.join(base, app.path.lstrip("/")))
    if not PurePosixPath(real).is_relative_to(base):
        return PathFacts(outside_root=True)
    home, home_uid = _home(base, app.user)
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        return PathFacts(home=home, home_uid=home_uid)
    links = st.st_nlink if not stat.S_ISDIR(st.st_mode) else 1
    return PathFacts(resolved=_device(base, real), uid=st.st_uid, links=links, inode=(st.st_dev, st.st_ino),
                     home=home, home_uid=home_uid)


def _device(base: str, real: str) -> str:
    return "/" + os.path.relpath(real, base) if real != base else "/"


def _home(base: str, user: str) -> tuple[str, int]:
    """Return (resolved device path, owner uid) of a user's home: /root for root, USER in the
    (resolved) /home otherwise; ("", -1) when there is none, or the home itself is a symlink (it
    could point anywhere). /home may be a link made by root (/home → var/home)."""
    if not user or "/" in user or user in (".", ".."):
        return "", -1
    if user == "root":
        folder = os.path.join(base, "root")
    else:
        homes = os.path.realpath(os.path.join(base, "home"))
        if not PurePosixPath(homes).is_relative_to(base):
            return "", -1
        folder = os.path.join(homes, user)
    try:
        st = os.lstat(folder)
    except OSError:
        return "", -1
    if not stat.S_ISDIR(st.st_mode):
        return "", -1
    return _device(base, folder), st.st_uid


def _owners(ctx: Context, paths: list[str]) -> dict[str, str]:
    """Return {path: `dpkg:NAME` or `rpm:NAME`} for those of `paths` a package installed. When
    rpm cannot answer, every path counts as owned: a file whose owner is unknown is not moved."""
    if not paths:
        return {}
    found = {path: f"dpkg:{name}" for path, name in dpkg.path_owners(ctx, paths).items()}
    if rpm_dbpath(ctx) is None:
        return found
    try:
        found.update((path, f"rpm:{name}") for path, name in
                     rpm.path_owners(ctx, [p for p in paths if p not in found and ctx.path(p).exists()]).items())
    except CommandError as exc:
        log_event(logger, logging.WARNING, "enforce.owner_unknown", path=paths[0], error=str(exc))
        return {path: found.get(path, "rpm:(unknown: rpm failed)") for path in paths}
    return found
