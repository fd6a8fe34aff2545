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
import stat
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Protocol

from agent.config import Config, interval_seconds
from agent.enforce.audit import AuditLog
from agent.enforce.deny import DenySet, denied_names, deny_set, guard_entries
from agent.enforce.execguard import Denial, GuardUnavailable
from agent.enforce.files import on_root
from agent.enforce.fapolicyd import fapolicyd_running, install_rules, render_rules
from agent.enforce.guardprocess import GuardProcess
from agent.enforce.notify import desktop_sessions, message, notify
from agent.enforce.critical import BASE_PACKAGES, agent_files, agent_trees, base_package, shells, with_real
from agent.enforce.plan import blocks, is_protected, over_cap
from agent.enforce.poll import KillOnLaunch
from agent.inventory import rpm
from agent.inventory.base import Context
from agent.inventory.dpkg import STATUS_FILE, package_files, parse_status
from agent.inventory.owned import app_files
from agent.log import log_event
from agent.model import BanList, Device, Finding
from agent.runner import CommandError, Runner
from agent.sources import facts

logger = logging.getLogger(__name__)

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
    """Return every file owned by a package marked Essential or Priority: required, as listed and
    resolved, which no deny rule may touch (a list that bans `sh` must not break the machine)."""
    status = on_root(root, STATUS_FILE)
    if not os.path.exists(status):
        return set()
    with open(status, encoding="utf-8", errors="replace") as handle:
        apps = parse_status(handle.read())
    files: set[str] = set()
    for app in apps:
        if app.extra_value("essential") == "yes" or app.extra_value("priority") == "required" or base_package(app):
            files.update(on_root(root, p) for p in package_files(root, app.id, app.extra_value("arch")))
    return with_real(files)


def rpm_base_files(config: Config, runner: Runner) -> set[str]:
    """Return the files the base-system and login-path packages (critical.BASE_PACKAGES) of an
    rpm system installed, as listed and resolved: rpm has no Essential mark, so these names are
    what keeps `ls` or `sshd` from a hash rule. Empty without an rpm database; an rpm that
    cannot run is logged."""
    ctx = Context(root=Path(config.enforcement.root), live=False, runner=runner, config=config)
    try:
        listed = rpm.installed_files(ctx, sorted(BASE_PACKAGES))
    except CommandError as exc:
        log_event(logger, logging.WARNING, "guard.base_files_unreadable", source="rpm", error=str(exc))
        return set()
    return with_real(on_root(config.enforcement.root, p) for p in listed)


def banned_packages(findings: Iterable[Finding], config: Config, device: Device) -> dict[str, Finding]:
    """Return {`source:package`: the finding} for the installed packages (dpkg, rpm, pacman, apk)
    whose files blocking findings would deny — essential, required, base-system and protected
    packages left out. Pure: counted against the cap before any file list is read."""
    found: dict[str, Finding] = {}
    for finding in findings:
        app = finding.app
        key = f"{app.source}:{app.id}"
        if key in found or not facts(app.source).file_list or not blocks(finding, config.enforcement, device):
            continue
        if is_protected(app, config.enforcement.protected) or app.extra_value("essential") == "yes" \
                or app.extra_value("priority") == "required" or base_package(app):
            continue
        found[key] = finding
    return found


def package_files_by_entry(packages: Iterable[Finding], config: Config, runner: Runner) -> dict[str, list[str]]:
    """Return {entry id: resolved regular files} of these packages (never what their symlinks
    point to), read from their managers' databases; a package whose file list cannot be read is
    logged and skipped."""
    root = config.enforcement.root
    ctx = Context(root=Path(root), live=False, runner=runner, config=config)
    found: dict[str, list[str]] = {}
    for finding in packages:
        try:
            listed = app_files(ctx, finding.app) or []
        except (OSError, CommandError) as exc:
            log_event(logger, logging.WARNING, "guard.files_unreadable", app=finding.app.id,
                      source=finding.app.source, rule=finding.entry.id, error=str(exc))
            continue
        paths = {os.path.realpath(path) for path in (on_root(root, p) for p in listed) if _regular(path)}
        found.setdefault(finding.entry.id, []).extend(sorted(paths))
    return found


def _regular(path: str) -> bool:
    """Return True for a regular file itself, not a symlink: a banned package's link to another
    package's program (an alternatives link) must not put that program on the deny list. Folders
    on the way are still resolved (usrmerge's /bin → /usr/bin), as the kernel reports execs."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def build_deny(
    banlist: BanList, findings: Iterable[Finding], config: Config, device: Device, now: datetime,
    runner: Runner | None = None,
) -> DenySet:
    """Given the list in force, this scan's findings, config and device, return what to deny —
    never the files of essential or base-system packages, the shells, the login path, nor the
    interpreter and libraries the agent runs on — or an empty set that says why when it would
    deny more than the one cap (`max_actions`) allows (then nothing is denied at all)."""
    root = config.enforcement.root
    entries = guard_entries(banlist, device, config.enforcement, now)
    packages = banned_packages(findings, config, device)
    counts = Counter({
        "deny-exec package": len(packages),
        "deny-exec name": len(denied_names(entries, config.enforcement.protected)),
        "deny-exec hash": len({h for e in entries for h in e.match.sha256}),
    })
    reason = over_cap(counts, config.enforcement.max_actions)
    if reason:
        log_event(logger, logging.WARNING, "guard.refused", device=device.id, reason=reason)
        AuditLog(audit_path(config)).write("refused", action="deny-exec", target=f"{sum(counts.values())} entries",
                                           device=device.id, outcome=f"refused: {reason}")
        return DenySet(refused=reason)
    runner = runner or Runner(commands=config.commands)
    return deny_set(
        entries, package_files_by_entry(packages.values(), config, runner),
        allowed=essential_files(root) | rpm_base_files(config, runner) | shells(root) | agent_files(),
        protected=[*with_real(on_root(root, p) for p in config.enforcement.protected if p.startswith("/")),
                   *agent_trees(), *(p for p in config.enforcement.protected if not p.startswith("/"))],
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
