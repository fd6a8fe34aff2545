"""Preventing execution for as long as the service runs: build the deny set, pick the guard.

The daemon's side of it, in four calls:

    deny = build_deny(banlist, findings, config, device, now)
    guard = make_guard(config, deny, runner, on_deny=denial_reporter(config, banlist, runner))
    guard.start()           # None from make_guard when enforcement is off
    guard.update(build_deny(...))   # after every scan or new list
    guard.stop()            # at shutdown

`guard: auto` writes fapolicyd rules when fapolicyd runs, else uses the fanotify guard, else
falls back to kill-on-launch polling; `fanotify`, `fapolicyd` and `poll` force one; `off` none.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Protocol

from agent.config import Config, interval_seconds
from agent.enforce.audit import AuditLog
from agent.enforce.deny import DenySet, deny_set, guard_entries
from agent.enforce.execguard import Denial, GuardUnavailable
from agent.enforce.files import on_root
from agent.enforce.fapolicyd import HEADER, fapolicyd_running, install_rules, render_rules
from agent.enforce.guardprocess import GuardProcess
from agent.enforce.notify import desktop_sessions, message, notify
from agent.enforce.plan import blocks, is_protected
from agent.enforce.poll import KillOnLaunch
from agent.inventory.dpkg import STATUS_FILE, package_files, parse_status
from agent.log import log_event
from agent.model import App, BanList, Device, Finding
from agent.runner import Runner
from agent.sources import facts

logger = logging.getLogger(__name__)

PACKAGE_FILES: dict[str, Callable[[str, App], list[str]]] = {
    "dpkg": lambda root, app: package_files(root, app.id, app.extra_value("arch")),
}
"""source → the files an installed package owns, read from an image root, for the sources whose
facts (agent.sources) say `file_list` (agent.inventory.owned has the lister of each of them)."""


class Guard(Protocol):
    """What the daemon starts, updates and stops, whichever guard runs."""

    def start(self) -> None: ...
    def update(self, deny: DenySet) -> None: ...
    def stop(self) -> None: ...


def audit_path(config: Config) -> str:
    return config.enforcement.audit_log or os.path.join(config.state_dir, "audit.jsonl")


def quarantine_dir(config: Config) -> Path:
    return Path(config.enforcement.quarantine_dir or os.path.join(config.state_dir, "quarantine"))


def essential_files(root: str) -> set[str]:
    """Return every file owned by a package marked Essential or Priority: required, which no
    deny rule may touch (a list that bans `sh` must not break the machine)."""
    status = on_root(root, STATUS_FILE)
    if not os.path.exists(status):
        return set()
    with open(status, encoding="utf-8", errors="replace") as handle:
        apps = parse_status(handle.read())
    files: set[str] = set()
    for app in apps:
        if app.extra_value("essential") == "yes" or app.extra_value("priority") == "required":
            files.update(on_root(root, p) for p in package_files(root, app.id, app.extra_value("arch")))
    return files


def banned_package_files(findings: Iterable[Finding], config: Config, device: Device) -> dict[str, list[str]]:
    """Return {entry id: regular files} of installed packages that blocking findings name
    (essential, required and protected packages left out)."""
    root = config.enforcement.root
    found: dict[str, list[str]] = {}
    for finding in findings:
        app = finding.app
        lister = PACKAGE_FILES.get(app.source) if facts(app.source).file_list else None
        if lister is None or not blocks(finding, config.enforcement, device):
            continue
        if is_protected(app, config.enforcement.protected) or app.extra_value("essential") == "yes" \
                or app.extra_value("priority") == "required":
            continue
        paths = [on_root(root, p) for p in lister(root, app)]
        found.setdefault(finding.entry.id, []).extend(p for p in paths if os.path.isfile(p))
    return found


def build_deny(banlist: BanList, findings: Iterable[Finding], config: Config, device: Device, now: datetime) -> DenySet:
    """Given the list in force, this scan's findings, config and device, return what to deny
    (never the essential packages' files, nor the interpreter the agent and its guard run on)."""
    root = config.enforcement.root
    return deny_set(
        guard_entries(banlist, device, config.enforcement, now),
        banned_package_files(findings, config, device),
        allowed=essential_files(root) | {os.path.realpath(sys.executable)},
        protected=[on_root(root, p) if p.startswith("/") else p for p in config.enforcement.protected],
    )


class FapolicydRules:
    """fapolicyd as the guard: start and update write (checked) deny rules and reload it;
    stop leaves them in place, since fapolicyd keeps guarding without appban."""

    def __init__(self, config: Config, deny: DenySet, runner: Runner) -> None:
        self.path = Path(on_root(config.enforcement.root, config.enforcement.fapolicyd_rules))
        self.deny = deny
        self.runner = runner

    def start(self) -> None:
        self.update(self.deny)

    def update(self, deny: DenySet) -> None:
        self.deny = deny
        text, skipped = render_rules(deny)
        for what in skipped:
            log_event(logger, logging.WARNING, "fapolicyd.skipped", what=what)
        install_rules(self.path, text, self.runner)

    def stop(self) -> None:
        return None


def guard_settings(config: Config) -> tuple[object, ...]:
    """Return the settings a running guard was made from: when a reloaded config changes any of
    them, the guard is stopped and the one the new config asks for started."""
    cfg = config.enforcement
    return (cfg.dry_run, cfg.guard, cfg.guard_mounts, cfg.guard_deadline, cfg.fail_closed, cfg.kill_interval,
            cfg.kill_grace, cfg.root, cfg.fapolicyd_rules, tuple(sorted(config.commands.items())))


def withdraw_fapolicyd_rules(config: Config, runner: Runner) -> bool:
    """Empty appban's fapolicyd rules file (and reload fapolicyd) when it still holds deny rules,
    so that setting `enforcement.mode` back to report stops fapolicyd denying on appban's behalf
    (FapolicydRules.stop leaves them, for a service that merely stops); return True when it did.

    Raise RulesError or CommandError (file put back) as install_rules does.
    """
    path = Path(on_root(config.enforcement.root, config.enforcement.fapolicyd_rules))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return False
    if not text.startswith(HEADER) or text == HEADER:
        return False
    return install_rules(path, HEADER, runner)


def make_guard(
    config: Config, deny: DenySet, runner: Runner, on_deny: Callable[[Denial], None] | None = None,
) -> Guard | None:
    """Return the guard config asks for (not started), or None when blocking is off or a dry run.

    Raise GuardUnavailable only when `guard: fanotify` is forced and cannot work here; `auto`
    falls back to polling instead.
    """
    cfg = config.enforcement
    if cfg.mode != "block" or cfg.dry_run or cfg.guard == "off":
        return None
    if cfg.guard == "fapolicyd" or (cfg.guard == "auto" and fapolicyd_running()):
        return FapolicydRules(config, deny, runner)
    poller = KillOnLaunch(deny, interval_seconds(cfg.kill_interval), cfg.kill_grace, on_deny)
    if cfg.guard == "poll":
        return poller
    fanotify = GuardProcess(deny, cfg.guard_mounts, cfg.guard_deadline, cfg.fail_closed, on_deny)
    if cfg.guard == "fanotify":
        return fanotify
    return _FirstThatStarts(fanotify, poller)


class _FirstThatStarts:
    """`guard: auto`: the fanotify guard, or kill-on-launch when fanotify cannot start here."""

    def __init__(self, preferred: GuardProcess, fallback: KillOnLaunch) -> None:
        self.candidates: tuple[Guard, Guard] = (preferred, fallback)
        self.active: Guard | None = None

    def start(self) -> None:
        try:
            self.candidates[0].start()
            self.active = self.candidates[0]
        except GuardUnavailable as exc:
            log_event(logger, logging.WARNING, "execguard.unavailable", error=str(exc), fallback="kill-on-launch")
            self.candidates[1].start()
            self.active = self.candidates[1]

    def update(self, deny: DenySet) -> None:
        if self.active is not None:
            self.active.update(deny)

    def stop(self) -> None:
        if self.active is not None:
            self.active.stop()
            self.active = None


def denial_reporter(config: Config, banlist: BanList, runner: Runner) -> Callable[[Denial], None]:
    """Return the `on_deny` callback: one audit line (`denied-exec`) and a notification."""
    audit = AuditLog(audit_path(config))
    entries = {e.id: e for e in banlist.entries}

    def report(denial: Denial) -> None:
        audit.write("denied-exec", action="deny-exec", target=denial.path, pid=denial.pid,
                    entry=denial.entry, outcome="denied-exec")
        entry = entries.get(denial.entry)
        if entry is not None and config.enforcement.notify:
            title, body = message(entry, os.path.basename(denial.path), "was stopped from starting",
                                  config.enforcement.contact)
            notify(runner, desktop_sessions(), title, body)

    return report
