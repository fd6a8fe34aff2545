"""Removing a banned package through its own package manager, then pinning it so it stays gone.

One small argv builder per source, in a dict, so a new source plugs in with one line (its row
in agent.sources says which program removes it, how it is rehearsed and pinned); every
command goes through the runner (timeouts, configurable program paths). Removal never cascades:
`dpkg --purge` and `rpm -e` refuse when other packages depend on the banned one, so a list can
never take half the system with it (the failure is reported instead), and it is rehearsed first
(`--dry-run`, `--test`) so a refused removal changes nothing at all.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Callable

from agent.enforce import windows
from agent.atomic import write_atomic
from agent.log import log_event
from agent.model import App
from agent.runner import Runner
from agent.sources import SOURCES, facts

logger = logging.getLogger(__name__)

REMOVE_TIMEOUT = 300.0
Argv = tuple[str, list[str]]
"""(program, arguments) for the runner."""


def _in_root(root: str) -> bool:
    return root.rstrip("/") != ""


def dpkg_argv(app: App, root: str) -> Argv:
    """Purge a Debian package (architecture-qualified when dpkg knows it so)."""
    package = app.aliases[0] if app.aliases else app.id
    return "dpkg", [*(["--root", root] if _in_root(root) else []), "--purge", package]


def rpm_argv(app: App, root: str) -> Argv:
    return "rpm", [*(["--root", root] if _in_root(root) else []), "-e", app.id]


def flatpak_argv(app: App, root: str) -> Argv:
    """System installs are removed by root; a user's install as that user (`--user` means the
    caller's own installation, so the command must run under their account)."""
    args = ["uninstall", "--noninteractive", "-y", "--user" if app.user else "--system", app.id]
    if app.user:
        return "runuser", ["-u", app.user, "--", "flatpak", *args]
    return "flatpak", args


def snap_argv(app: App, root: str) -> Argv:
    return "snap", ["remove", "--purge", app.id]


def windows_argv(app: App, root: str) -> Argv:
    """The silent uninstaller of an Add/Remove Programs entry or Store package (on Windows)."""
    program, *args = windows.uninstall_argv(app)
    return program, args


UNINSTALLERS: dict[str, Callable[[App, str], Argv]] = {
    "dpkg": dpkg_argv,
    "rpm": rpm_argv,
    "flatpak": flatpak_argv,
    "snap": snap_argv,
    "windows": windows_argv,
}
"""source → argv builder for the sources whose facts (agent.sources) name a remover; Android
apps are removed on the phone (agent.enforce.android)."""


def available_sources(runner: Runner) -> frozenset[str]:
    """Return the sources whose uninstall program exists on this host."""
    return frozenset(name for name, source in SOURCES.items()
                     if source.remover and runner.which(source.remover) is not None)


def safe_name(package: str) -> str:
    """APT ignores preference files whose names hold anything but letters, digits, `_`, `-`, `.`."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", package)


def apt_preference(package: str, entry: str) -> str:
    """Return an APT preferences stanza that makes every version of `package` uninstallable."""
    return (
        f"Explanation: banned by appban entry {entry}; removed, and pinned so apt will not reinstall it\n"
        f"Package: {package}\nPin: version *\nPin-Priority: -1\n"
    )


def pin_apt(app: App, root: str, entry: str, runner: Runner) -> str:
    path = Path(root, "etc/apt/preferences.d", f"appban-{safe_name(app.id)}")
    write_atomic(path, apt_preference(app.id, entry).encode(), 0o644, parents=True)
    return str(path)


def with_dnf_exclude(text: str, package: str) -> str:
    """Given dnf.conf's text, return it with `package` in `[main]`'s `excludepkgs` (added once)."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip() == "[main]"), None)
    if start is None:
        lines = ["[main]", *lines] if lines else ["[main]"]
        start = 0
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for i in range(start + 1, end):
        key, sep, value = lines[i].partition("=")
        if sep and key.strip() in ("excludepkgs", "exclude"):
            names = [n for n in re.split(r"[,\s]+", value.strip()) if n]
            if package not in names:
                lines[i] = f"{key.strip()}={','.join([*names, package])}"
            return "\n".join(lines) + "\n"
    lines.insert(end, f"excludepkgs={package}")
    return "\n".join(lines) + "\n"


def pin_dnf(app: App, root: str, entry: str, runner: Runner) -> str:
    path = Path(root, "etc/dnf/dnf.conf")
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    write_atomic(path, with_dnf_exclude(text, app.id).encode(), 0o644, parents=True)
    return str(path)


def pin_flatpak(app: App, root: str, entry: str, runner: Runner) -> str:
    """`flatpak mask` stops installs and updates of a ref (flatpak 1.8+)."""
    if app.user:
        runner.run("runuser", ["-u", app.user, "--", "flatpak", "mask", "--user", app.id])
    else:
        runner.run("flatpak", ["mask", "--system", app.id])
    return f"flatpak mask {app.id}"


PINNERS: dict[str, Callable[[App, str, str, Runner], str]] = {
    "apt": pin_apt,
    "dnf": pin_dnf,
    "flatpak": pin_flatpak,
}
"""pin (a source's `pin` fact in agent.sources) → the writer that keeps the app from coming back."""


def uninstall(app: App, root: str, entry: str, runner: Runner) -> str:
    """Given an installed app, remove it through its source's manager and pin it; return a
    one-line description of what was done. Raise CommandError if the removal fails, OSError if
    the pin cannot be written (the package is gone either way then)."""
    source = facts(app.source)
    program, args = UNINSTALLERS[app.source](app, root)
    if source.rehearsal:
        runner.run(program, [source.rehearsal, *args], timeout=REMOVE_TIMEOUT)
    runner.run(program, args, timeout=REMOVE_TIMEOUT)
    log_event(logger, logging.WARNING, "enforce.removed", app=app.id, source=app.source, rule=entry)
    if not source.pin:
        return f"removed ({program})"
    return f"removed ({program}); pinned: {PINNERS[source.pin](app, root, entry, runner)}"
