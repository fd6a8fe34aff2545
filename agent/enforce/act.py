"""Carrying out a plan: gather host facts, plan, then act (or, in a dry run, only print).

Every action is audited before it runs (`planned`) and after (`done` or `failed`), refused ones
as `refused`, and its outcome is written onto each finding it serves, so the report says what
happened to every banned app. One failure never stops the other actions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Sequence, TextIO

from agent.config import Config
from agent.enforce.android import block as block_on_phone
from agent.enforce.audit import AuditLog
from agent.enforce.fapolicyd import RulesError, fapolicyd_running
from agent.enforce.guard import FapolicydRules, audit_path, build_deny, quarantine_dir
from agent.enforce.notify import desktop_sessions, message, notify
from agent.enforce.evidence import examine, examine_all, target_refusal
from agent.enforce.plan import DONE_OUTCOME, Action, Facts, Plan, plan
from agent.enforce.processes import Identity, KillError, agent_pids, terminate, unsafe_pids
from agent.enforce.quarantine import QuarantineError, quarantine
from agent.enforce.uninstall import available_sources, uninstall
from agent.inventory.android import UnsafeIdentifierError
from agent.log import log_event
from agent.model import BanList, Device, Finding
from agent.runner import CommandError, Runner
from agent.sources import facts

logger = logging.getLogger(__name__)

ACTION_ERRORS = (KillError, CommandError, QuarantineError, RulesError, UnsafeIdentifierError, OSError)


@dataclass(frozen=True)
class Enforced:
    """What enforcement did: the plan and the findings with their outcomes."""

    plan: Plan
    findings: tuple[Finding, ...]


def host_facts(findings: Sequence[Finding], runner: Runner, root: str = "/") -> Facts:
    """Read what the planner needs from this host (under `root`): the agent's pids, which of the
    matched processes must not be touched, which uninstallers exist, and where each path a
    quarantine could move really leads and who owns it."""
    pids = [int(f.app.extra_value("pid")) for f in findings
            if f.app.source == "process" and f.app.extra_value("pid").isdigit()]
    paths = examine_all(root, [f.app for f in findings
                               if facts(f.app.source).quarantine and f.app.path.startswith("/")], runner)
    return Facts(agent_pids(), unsafe_pids(pids), available_sources(runner), paths)


def enforce(
    findings: Sequence[Finding], config: Config, device: Device, runner: Runner, out: TextIO,
    dry_run: bool = False,
) -> Enforced:
    """Given matched findings, plan and carry out blocking on this host; return the plan and the
    findings with outcomes. With `dry_run` (or `enforcement.dry_run`) print the plan, change nothing."""
    dry_run = dry_run or config.enforcement.dry_run
    the_plan = plan(findings, config.enforcement, device, host_facts(findings, runner, config.enforcement.root))
    audit = AuditLog(audit_path(config))
    outcomes: dict[int, str] = {}
    if dry_run:
        out.write(the_plan.render())
    for action in the_plan.actions:
        outcome = _carry_out(action, config, runner, audit, dry_run)
        for finding in action.findings:
            outcomes[id(finding)] = outcome
    return Enforced(the_plan, tuple(replace(f, outcome=outcomes[id(f)]) if id(f) in outcomes else f for f in findings))


def _carry_out(action: Action, config: Config, runner: Runner, audit: AuditLog, dry_run: bool) -> str:
    fields = {"action": action.kind, "target": action.target, "entry": ",".join(action.entries),
              "app": action.app.id, "source": action.app.source, "device": action.findings[0].device}
    if action.refused:
        audit.write("refused", **fields, outcome=f"refused: {action.refused}")
        log_event(logger, logging.WARNING, "enforce.refused", app=action.app.id, rule=fields["entry"],
                  action=action.kind, reason=action.refused)
        return f"refused: {action.refused}"
    if dry_run:
        audit.write("dry-run", **fields, outcome="dry-run")
        return "dry-run"
    audit.write("planned", **fields)
    try:
        detail = _do(action, config, runner)
    except ACTION_ERRORS as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        audit.write("failed", **fields, outcome=f"failed: {why}")
        log_event(logger, logging.ERROR, "enforce.failed", app=action.app.id, rule=fields["entry"],
                  action=action.kind, error=why)
        return f"failed: {why}"
    outcome = DONE_OUTCOME[action.kind]
    audit.write("done", **fields, outcome=outcome, detail=detail)
    if config.enforcement.notify:
        entry = action.findings[0].entry
        what = {"kill": "was stopped", "uninstall": "was removed", "quarantine": "was quarantined"}[action.kind]
        notify(runner, desktop_sessions(), *message(entry, action.app.name or action.app.id, what,
                                                    config.enforcement.contact))
    return outcome


def _do(action: Action, config: Config, runner: Runner) -> str:
    cfg = config.enforcement
    entry = action.findings[0].entry.id
    if action.kind == "kill":
        return f"{terminate(Identity.of(action.app), cfg.kill_grace)} process(es) stopped"
    if action.kind == "uninstall" and action.app.source == "android":
        return _phone_uninstall(action, config, runner)
    if action.kind == "uninstall":
        return uninstall(action.app, cfg.root, entry, runner)
    return _quarantine(action, config, runner)


def _quarantine(action: Action, config: Config, runner: Runner) -> str:
    """Move the planned file, after judging its path once more: what the user changed since the
    scan (a symlink swapped in) is refused like anything else the planner refuses."""
    seen = examine(config.enforcement.root, action.app, runner)
    why = target_refusal(action.app, seen)
    if why or seen.resolved != action.target:
        raise QuarantineError(f"not moved: {why or f'{action.app.path} now resolves to {seen.resolved}'}")
    record = quarantine(config.enforcement.root, quarantine_dir(config), [action.target],
                        action.findings[0].entry.id, action.app.id, expect=seen.inode)
    return f"quarantine id {record.id}"


def _phone_uninstall(action: Action, config: Config, runner: Runner) -> str:
    """Remove or disable the app for its Android user on the attached phone (config
    `gateway.android_block`); `pm` can exit 0 on failure, so its words decide."""
    app = action.app
    outcome = block_on_phone(runner, config.gateway.android_block, app.device, int(app.user or 0), app.id)
    if outcome.startswith("failed"):
        raise CommandError(f"adb pm on {app.device}: {outcome}")
    return outcome


def write_fapolicyd_rules(
    banlist: BanList, findings: Sequence[Finding], config: Config, device: Device, runner: Runner,
    out: TextIO, now: datetime, dry_run: bool = False,
) -> None:
    """Where fapolicyd is the guard (config `guard: fapolicyd`, or `auto` with fapolicyd
    running), write its deny rules as part of a one-off enforcement run."""
    cfg = config.enforcement
    if cfg.mode != "block" or not (cfg.guard == "fapolicyd" or (cfg.guard == "auto" and fapolicyd_running())):
        return
    rules = FapolicydRules(config, build_deny(banlist, findings, config, device, now, runner), runner)
    if dry_run or cfg.dry_run:
        refused = f" — deny list refused: {rules.deny.refused}" if rules.deny.refused else ""
        out.write(f"enforcement plan: write fapolicyd rules to {rules.path}{refused}\n")
        return
    try:
        rules.start()
    except (RulesError, CommandError, OSError) as exc:
        log_event(logger, logging.ERROR, "fapolicyd.failed", path=str(rules.path), error=str(exc))
        AuditLog(audit_path(config)).write("failed", action="fapolicyd-rules", target=str(rules.path),
                                           outcome=f"failed: {exc}")
