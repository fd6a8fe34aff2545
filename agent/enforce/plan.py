"""The enforcement planner: a pure function from findings to the actions that may be taken.

Why pure: every safety rail (opt-in, scope, PID 1, the agent itself, essential and base-system
packages, the local `protected` list, where a file really lies and who owns it, the per-run cap)
is decided here, from records and host facts only, so each rail is tested exhaustively without
touching a machine, and a dry run prints exactly what a real run would do.

Which evidence may lead to which action is the table in docs/enforcement.md ("Evidence and
authority"): a running process (seen by the kernel) may be killed, a package database record
uninstalled, a file the scan found quarantined if `evidence.target_refusal` allows it; a launcher
is evidence for the report only.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping

from agent.config import EnforcementConfig
from agent.enforce.critical import base_package, never_denied_program
from agent.enforce.evidence import PathFacts, inside, target_refusal
from agent.enforce.ios import manual_instruction
from agent.enforce.windows import UninstallRefused, uninstall_argv
from agent.model import App, Device, Finding
from agent import sources

ActionKind = Literal["kill", "uninstall", "quarantine", "skip"]
KIND_ORDER: dict[str, int] = {"kill": 0, "uninstall": 1, "quarantine": 2, "skip": 3}
"""Processes die before their package goes, so a removal never races a running binary."""

DONE_OUTCOME: dict[str, str] = {"kill": "blocked", "uninstall": "removed", "quarantine": "quarantined"}

TOO_MANY = "too many — refused"

LAUNCHER_ONLY = ("a launcher is evidence for the report, never a reason to move a file "
                 "(a running program is stopped, a package removed, an AppImage found by the scan quarantined)")


@dataclass(frozen=True)
class Facts:
    """What the planner must know about the host, gathered (with I/O) before planning.

    `agent_pids` are the agent and its parent; `unsafe_pids` maps pids the executor found it must
    not touch (kernel threads, other PID namespaces) to why; `uninstall_sources` are the sources
    this host has an uninstaller for; `paths` maps each path a quarantine would move to what
    `evidence.examine` saw of it (a path not in it is never moved).
    """

    agent_pids: frozenset[int] = frozenset()
    unsafe_pids: Mapping[int, str] = field(default_factory=dict)
    uninstall_sources: frozenset[str] = frozenset()
    paths: Mapping[str, PathFacts] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    """One thing to do (or refused) for one target, on behalf of the findings that name it."""

    kind: ActionKind
    target: str
    """A pid for `kill`, a package id for `uninstall`, for `quarantine` the resolved path moved."""
    app: App
    findings: tuple[Finding, ...]
    refused: str = ""
    """Why a safety rail stops this action; empty when it will be carried out."""

    @property
    def entries(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.entry.id for f in self.findings))

    def describe(self) -> str:
        """One line a person can check before saying yes: what, on what, for which rule."""
        what = {
            "kill": f"kill pid {self.target} ({self.app.path or self.app.id})",
            "uninstall": f"uninstall {self.app.source} package {self.target}",
            "quarantine": f"quarantine {self.target}",
            "skip": f"leave {self.target}",
        }[self.kind]
        tail = f" — refused: {self.refused}" if self.refused else ""
        return f"{what} [entry {', '.join(self.entries)}]{tail}"


@dataclass(frozen=True)
class Plan:
    """Every action a run would take, in order, plus a note when nothing may be done at all."""

    actions: tuple[Action, ...] = ()
    note: str = ""

    def render(self) -> str:
        """Return the plan as text, one action per line (what a dry run prints)."""
        lines = [f"enforcement plan: {self.note}"] if self.note else []
        if not self.actions and not self.note:
            lines.append("enforcement plan: nothing to do")
        elif self.actions:
            lines.append(f"enforcement plan: {len(self.actions)} action(s)")
        lines += [f"  {i}. {a.describe()}" for i, a in enumerate(self.actions, 1)]
        return "\n".join(lines) + "\n"


def blocks(finding: Finding, config: EnforcementConfig, device: Device) -> bool:
    """Return True when this finding may be acted on: the entry says block, the local
    administrator said block, it is a violation (never advisory, exempt or upcoming), and it is
    on this device (whose scope the matcher already checked)."""
    return (
        finding.entry.action == "block" and config.mode == "block" and finding.status == "violation"
        and (finding.device == device.id or sources.facts(finding.app.source).gateway)
    )


def is_protected(app: App, protected: Iterable[str], also: Iterable[str] = ()) -> bool:
    """Return True when the local `protected` list names the app's package or covers its path
    (or one of the paths `also` gives, such as where the path resolves to)."""
    names = {app.id.casefold(), app.name.casefold(), *(a.casefold() for a in app.aliases)}
    paths = [clean_path(p) for p in (app.path, *also) if p.startswith("/")]
    for item in protected:
        if item.startswith("/"):
            folder = clean_path(item)
            if any(path == folder or inside(path, folder) for path in paths):
                return True
        elif item.casefold() in names:
            return True
    return False


def clean_path(path: str) -> str:
    """Return an absolute path with `//`, `/./` and `..` folded away (no I/O: symlinks are
    resolved by `evidence.examine`, whose result is checked as well)."""
    return os.path.normpath("/" + path.lstrip("/"))


def plan(findings: Iterable[Finding], config: EnforcementConfig, device: Device, facts: Facts) -> Plan:
    """Given matched findings, local enforcement config, this device and host facts, return the Plan.

    Only blocking findings (see `blocks`) produce actions; each target gets one action whatever
    the number of entries naming it; refused actions stay in the plan with their reason.
    """
    if config.mode != "block":
        return Plan(note="enforcement.mode is report: nothing is blocked")
    grouped: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        if not blocks(finding, config, device):
            continue
        kind, target = _choose(finding.app, facts)
        grouped.setdefault((kind, target), []).append(finding)
    actions = [_action(kind, target, items, config, facts) for (kind, target), items in grouped.items()]
    actions.sort(key=lambda a: (KIND_ORDER[a.kind], a.app.source, a.target))
    counted = {(a.kind, counted_as(a)) for a in actions if a.kind != "skip" and not a.refused}
    reason = over_cap(Counter(kind for kind, _ in counted), config.max_actions)
    if reason:
        return Plan(tuple(a if a.refused else _refuse(a, reason) for a in actions), note=reason)
    return Plan(tuple(actions))


def counted_as(action: Action) -> str:
    """Return what one unit of the cap is for this action: a program for kills (the processes of
    one executable — a browser's dozen, or one app started twice — are one program to stop),
    the target itself for every other kind."""
    return (action.app.path or action.app.id) if action.kind == "kill" else action.target


def over_cap(counts: Mapping[str, int], cap: int) -> str:
    """Given how many actions of each kind a run would take (kills counted per program, see
    `counted_as`), return why the run is refused whole when they are more than `cap` together,
    or "" when they are not.

    One cap covers every kind (kills, uninstalls with their pins, quarantines, phone removals,
    exec-guard deny entries): a list that matches too much is a mistake, and stopping half of it
    is no safer than stopping all of it."""
    total = sum(counts.values())
    if total <= cap:
        return ""
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()) if n)
    return f"{TOO_MANY} ({total} actions: {kinds}; max_actions is {cap} and covers every kind of action)"


def _action(kind: ActionKind, target: str, items: list[Finding], config: EnforcementConfig, facts: Facts) -> Action:
    """Return the one action on `target` for the findings naming it: carried out on behalf of
    the first app whose evidence allows it (several views of one file — found in /opt and through
    a link in a home — must not refuse or allow it by the order they were found in), refused
    with the first reason when none does."""
    judged = [(app, _refusal(kind, target, app, config, facts)) for app in dict.fromkeys(f.app for f in items)]
    app, refused = next(((a, why) for a, why in judged if not why), judged[0])
    return Action(kind, target, app, tuple(items), refused)


def _choose(app: App, facts: Facts) -> tuple[ActionKind, str]:
    """Pick the action that fits the app's source: kill a process, uninstall through the
    package's own manager, quarantine a launcher's unpackaged program."""
    if app.source == "process":
        return "kill", app.extra_value("pid")
    if app.source in facts.uninstall_sources:
        return "uninstall", app.id
    if sources.facts(app.source).quarantine and app.path.startswith("/"):
        seen = facts.paths.get(app.path)
        return "quarantine", (seen.resolved if seen is not None and seen.resolved else app.path)
    if app.source == "desktop" and app.path:
        return "skip", app.path
    return "skip", f"{app.source}:{app.id}"


def _refusal(kind: ActionKind, target: str, app: App, config: EnforcementConfig, facts: Facts) -> str:
    """Return why a safety rail forbids this action, or "" when it may go ahead."""
    if is_protected(app, config.protected, (target,) if kind == "quarantine" else ()):
        return "protected by local config"
    if kind == "kill":
        if never_denied_program(app.path or app.id):
            return "on the shell, boot or login path"
        return _pid_refusal(target, facts)
    if kind == "uninstall":
        if app.extra_value("essential") == "yes":
            return "essential package"
        if app.extra_value("priority") == "required":
            return "package required by the distribution"
        if base_package(app):
            return "part of the base system or the login path"
        if app.source == "windows":
            return _windows_refusal(app)
    if kind == "quarantine":
        return target_refusal(app, facts.paths.get(app.path))
    if kind == "skip":
        if app.source == "ios":
            return manual_instruction(app, Device(id=app.device))
        if app.source == "desktop":
            return LAUNCHER_ONLY
        return f"no blocking action for source {app.source!r} on this host"
    return ""


WINDOWS_USER_ENTRY = ("per-user entry from the user's own registry hive: its uninstall command and package name "
                      "are text the user can write, so they are reported, never run as an administrator")


def _windows_refusal(app: App) -> str:
    """An Add/Remove Programs entry with only an interactive uninstaller is refused, not guessed
    at; a per-user entry (NTUSER.DAT, UsrClass.dat) is evidence only: run as SYSTEM, its
    QuietUninstallString would be the user's own command, its MSI product code or package name
    could name a machine-wide product (an endpoint agent) for removal."""
    if app.extra_value("scope") == "user":
        return WINDOWS_USER_ENTRY
    try:
        uninstall_argv(app)
    except UninstallRefused as exc:
        return str(exc)
    return ""


def _pid_refusal(target: str, facts: Facts) -> str:
    if not target.isdigit():
        return "no process id recorded"
    pid = int(target)
    if pid <= 1:
        return "PID 1 (init) is never touched"
    if pid in facts.agent_pids:
        return "the agent itself (or its parent)"
    return facts.unsafe_pids.get(pid, "")


def _refuse(action: Action, reason: str) -> Action:
    return Action(action.kind, action.target, action.app, action.findings, reason)
