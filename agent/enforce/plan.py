"""The enforcement planner: a pure function from findings to the actions that may be taken.

Why pure: every safety rail (opt-in, scope, PID 1, the agent itself, essential packages, the local
`protected` list, the per-run cap) is decided here, from records only, so each rail is tested
exhaustively without touching a machine, and a dry run prints exactly what a real run would do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping

from agent.config import EnforcementConfig
from agent.enforce.ios import manual_instruction
from agent.enforce.windows import UninstallRefused, uninstall_argv
from agent.model import App, Device, Finding
from agent import sources

ActionKind = Literal["kill", "uninstall", "quarantine", "skip"]
KIND_ORDER: dict[str, int] = {"kill": 0, "uninstall": 1, "quarantine": 2, "skip": 3}
"""Processes die before their package goes, so a removal never races a running binary."""

DONE_OUTCOME: dict[str, str] = {"kill": "blocked", "uninstall": "removed", "quarantine": "quarantined"}

PACKAGE_PATHS = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/etc/")
"""Folders package managers own: a launcher's program there goes with its package, never alone."""

TOO_MANY = "too many — refused"

@dataclass(frozen=True)
class Facts:
    """What the planner must know about the host, gathered (with I/O) before planning.

    `agent_pids` are the agent and its parent; `unsafe_pids` maps pids the executor found it must
    not touch (kernel threads, other PID namespaces) to why; `uninstall_sources` are the sources
    this host has an uninstaller for.
    """

    agent_pids: frozenset[int] = frozenset()
    unsafe_pids: Mapping[int, str] = field(default_factory=dict)
    uninstall_sources: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Action:
    """One thing to do (or refused) for one target, on behalf of the findings that name it."""

    kind: ActionKind
    target: str
    """A pid for `kill`, a package id for `uninstall`, a path for `quarantine`."""
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


def is_protected(app: App, protected: Iterable[str]) -> bool:
    """Return True when the local `protected` list names the app's package or covers its path."""
    names = {app.id.casefold(), app.name.casefold(), *(a.casefold() for a in app.aliases)}
    for item in protected:
        if item.startswith("/"):
            base = item.rstrip("/") or "/"
            if app.path and (app.path == base or app.path.startswith(base.rstrip("/") + "/")):
                return True
        elif item.casefold() in names:
            return True
    return False


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
    actions = [
        Action(kind, target, items[0].app, tuple(items), _refusal(kind, target, items[0].app, config, facts))
        for (kind, target), items in grouped.items()
    ]
    actions.sort(key=lambda a: (KIND_ORDER[a.kind], a.app.source, a.target))
    removals = sum(1 for a in actions if a.kind in ("uninstall", "quarantine") and not a.refused)
    if removals > config.max_removals:
        reason = f"{TOO_MANY} ({removals} removals, max_removals is {config.max_removals})"
        actions = [a if a.refused else _refuse(a, reason) for a in actions]
        return Plan(tuple(actions), note=reason)
    return Plan(tuple(actions))


def _choose(app: App, facts: Facts) -> tuple[ActionKind, str]:
    """Pick the action that fits the app's source: kill a process, uninstall through the
    package's own manager, quarantine a launcher's unpackaged program."""
    if app.source == "process":
        return "kill", app.extra_value("pid")
    if app.source in facts.uninstall_sources:
        return "uninstall", app.id
    if sources.facts(app.source).quarantine and app.path.startswith("/"):
        return "quarantine", app.path
    if app.source == "desktop" and app.path.startswith("/"):
        if app.path.startswith(PACKAGE_PATHS):
            return "skip", app.path
        return "quarantine", app.path
    return "skip", f"{app.source}:{app.id}"


def _refusal(kind: ActionKind, target: str, app: App, config: EnforcementConfig, facts: Facts) -> str:
    """Return why a safety rail forbids this action, or "" when it may go ahead."""
    if is_protected(app, config.protected):
        return "protected by local config"
    if kind == "kill":
        return _pid_refusal(target, facts)
    if kind == "uninstall":
        if app.extra_value("essential") == "yes":
            return "essential package"
        if app.extra_value("priority") == "required":
            return "package required by the distribution"
        if app.source == "windows":
            return _windows_refusal(app)
    if kind == "skip":
        if app.source == "ios":
            return manual_instruction(app, Device(id=app.device))
        if app.source == "desktop":
            return "program belongs to a package; the package is what gets removed"
        return f"no blocking action for source {app.source!r} on this host"
    return ""


def _windows_refusal(app: App) -> str:
    """An Add/Remove Programs entry with only an interactive uninstaller is refused, not guessed at."""
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
