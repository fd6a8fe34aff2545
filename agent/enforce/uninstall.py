"""Removing a banned package through its own package manager, then pinning it so it stays gone.

One small argv builder per source, in a dict, so a new source plugs in with one line; every
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

logger = logging.getLogger(__name__)

REMOVE_TIMEOUT = 300.0
Argv = tuple[str, list[str]]
"""(program, arguments) for the runner."""


def _in_root(root: str) -> bool:
    return root.rstrip("/") != ""


def dpkg_argv(app: App, root: str) -> Argv:
    """Purge a Debian package (architecture-qualified when dpkg knows it so)."""
    package = app.aliases[0] if app.aliases else app.id
    return "dpkg", [*(["--root", root] if _in_root(root) else []), "--purge", "--", package]


def rpm_argv(app: App, root: str) -> Argv:
    return "rpm", [*(["--root", root] if _in_root(root) else []), "-e", "--", app.id]


def flatpak_argv(app: App, root: str) -> Argv:
    """System installs are removed by root; a user's install as that user (`--user` means the
    caller's own installation, so the command must run under their account)."""
    args = ["uninstall", "--noninteractive", "-y", "--user" if app.user else "--system", "--", app.id]
    if app.user:
        return "runuser", ["-u", app.user, "--", "flatpak", *args]
    return "flatpak", args


def snap_argv(app: App, root: str) -> Argv:
    return "snap", ["remove", "--purge", "--", app.id]


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
"""source → argv builder; a source with no entry here is never uninstalled."""


def _rehearsal(build: Callable[[App, str], Argv], flag: str) -> Callable[[App, str], Argv]:
    def rehearse(app: App, root: str) -> Argv:
        program, args = build(app, root)
        return program, [flag, *args]
    return rehearse


REHEARSALS: dict[str, Callable[[App, str], Argv]] = {
    "dpkg": _rehearsal(dpkg_argv, "--dry-run"),
    "rpm": _rehearsal(rpm_argv, "--test"),
}
"""source → a run that changes nothing but fails like the real one would. Why: a failed
`dpkg --purge` still leaves the package selected for purge, which a later apt run would carry
out; rehearsing first means a refused removal leaves the system exactly as it was."""


def available_sources(runner: Runner) -> frozenset[str]:
    """Return the sources whose uninstall program exists on this host."""
    programs = {"dpkg": "dpkg", "rpm": "rpm", "flatpak": "flatpak", "snap": "snap",
                "windows": "powershell.exe", "android": "adb"}
    return frozenset(s for s, program in programs.items() if runner.which(program) is not None)


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
        runner.run("runuser", ["-u", app.user, "--", "flatpak", "mask", "--user", "--", app.id])
    else:
        runner.run("flatpak", ["mask", "--system", "--", app.id])
    return f"flatpak mask {app.id}"


PINNERS: dict[str, Callable[[App, str, str, Runner], str]] = {
    "dpkg": pin_apt,
    "rpm": pin_dnf,
    "flatpak": pin_flatpak,
}
"""source → pin writer; snap has no pin, so every scan re-checks and removes it again."""


def uninstall(app: App, root: str, entry: str, runner: Runner) -> str:
    """Given an installed app, remove it through its source's manager and pin it; return a
    one-line description of what was done. Raise CommandError if the removal fails, OSError if
    the pin cannot be written (the package is gone either way then)."""
    rehearse = REHEARSALS.get(app.source)
    if rehearse is not None:
        runner.run(*rehearse(app, root), timeout=REMOVE_TIMEOUT)
    program, args = UNINSTALLERS[app.source](app, root)
    runner.run(program, args, timeout=REMOVE_TIMEOUT)
    log_event(logger, logging.WARNING, "enforce.removed", app=app.id, source=app.source, rule=entry)
    pinner = PINNERS.get(app.source)
    if pinner is None:
        return f"removed ({program})"
    return f"removed ({program}); pinned: {pinner(app, root, entry, runner)}"
