"""Blocking through an MDM, carried out: patch AMAPI policies, write Intune/Jamf artefacts.

Every change is audited (`planned` then `done` or `failed`; `refused` and `dry-run` too) with the
policy, the packages and the exact call. A dry run prints each policy before and after as JSON and
the call that would be made, and changes nothing. The plan itself is agent/enforce/mdm_plan.py.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Mapping, Sequence, TextIO

from agent.atomic import write_atomic
from agent.config import Config
from agent.enforce.act import enforce
from agent.enforce.audit import AuditLog
from agent.enforce.guard import audit_path
from agent.enforce.mdm_plan import (
    Artefact, PolicyChange, blocked_policy, intune_artefacts, jamf_artefacts, plan_amapi,
)
from agent.enforce.plan import is_protected
from agent.inventory.amapi import AmapiConnector
from agent.inventory.api import ApiError, resource_path
from agent.log import log_event
from agent.match import finding_key
from agent.model import BanException, BanList, Device, Finding, Inventory, Report
from agent.printable import printable
from agent.runner import Runner
from agent.sources import facts

logger = logging.getLogger(__name__)

UPDATE_MASK = "applications"
"""policies.patch replaces only the fields the mask names, so nothing else in a policy can change."""


def mdm_findings(findings: Sequence[Finding]) -> tuple[list[Finding], list[Finding]]:
    """Split findings into (apps read from an MDM's API, the others)."""
    through = [f for f in findings if facts(f.app.source).mdm]
    return through, [f for f in findings if not facts(f.app.source).mdm]


def enforce_all(
    report: Report, banlist: BanList, config: Config, host: Device, runner: Runner, out: TextIO,
    now: datetime, dry_run: bool = False,
) -> list[Finding]:
    """Block on this host (and adb phones) what may be blocked, then through each MDM what is on
    its devices, under one `max_actions` cap; return every finding with its outcome, in report
    order. (`check --enforce` and the service both come here.)"""
    through_mdm, local = mdm_findings(report.findings)
    enforced = enforce(local, config, host, runner, out, dry_run)
    findings = list(enforced.findings)
    if through_mdm:
        used = Counter(a.kind for a in enforced.plan.actions if a.kind != "skip" and not a.refused)
        findings += enforce_mdm(through_mdm, report.inventory, banlist, config, out, now, dry_run, used)
    return sorted(findings, key=finding_key)


def artefact_dir(config: Config) -> Path:
    return Path(config.state_dir) / "mdm-artefacts"


def enforce_mdm(
    findings: Sequence[Finding], inventory: Inventory, banlist: BanList, config: Config, out: TextIO,
    now: datetime, dry_run: bool = False, already: Mapping[str, int] | None = None,
) -> list[Finding]:
    """Given findings on MDM devices, block what may be blocked through each configured MDM;
    return the findings with their outcomes. `already` counts the actions this run takes on the
    host by kind, which share the one `max_actions` cap."""
    dry_run = dry_run or config.enforcement.dry_run
    devices = {d.id: d for d in inventory.devices}
    exceptions: dict[str, tuple[BanException, ...]] = {}
    for exc in banlist.exceptions:
        exceptions[exc.entry] = exceptions.get(exc.entry, ()) + (exc,)
    audit = AuditLog(audit_path(config))
    outcomes: dict[int, str] = {}
    amapi = config.mdm.amapi
    if amapi is not None:
        connector = AmapiConnector(amapi)
        for change in plan_amapi(findings, devices, inventory.errors, exceptions, config.enforcement, now, already):
            outcome = _apply(change, connector, audit, out, dry_run)
            for finding in change.findings:
                protected = is_protected(finding.app, config.enforcement.protected)
                outcomes[id(finding)] = "refused: protected by local config" if protected else outcome
    artefacts: list[Artefact] = []
    if config.mdm.intune is not None:
        artefacts += intune_artefacts(findings, devices, config.enforcement, banlist, now, config.mdm.intune.base_url)
    if config.mdm.jamf is not None:
        artefacts += jamf_artefacts(findings, devices, config.enforcement, banlist, now, config.mdm.jamf.url)
    for artefact in artefacts:
        outcome = _write(artefact, artefact_dir(config), audit, out, dry_run)
        for finding in artefact.findings:
            outcomes.setdefault(id(finding), outcome)
    return [replace(f, outcome=outcomes[id(f)]) if id(f) in outcomes else f for f in findings]


def _apply(change: PolicyChange, connector: AmapiConnector, audit: AuditLog, out: TextIO, dry_run: bool) -> str:
    """Patch one policy (or, in a dry run, print its before and after); return the outcome."""
    fields = {"action": "mdm-policy-block", "mdm": "amapi", "target": change.policy,
              "app": ",".join(change.packages), "entry": ",".join(dict.fromkeys(f.entry.id for f in change.findings))}
    if change.refused:
        audit.write("refused", **fields, outcome=f"refused: {change.refused}")
        log_event(logger, logging.WARNING, "mdm.block_refused", policy=change.policy, rule=fields["entry"],
                  reason=change.refused)
        if dry_run:
            out.write(printable(f"mdm plan: leave {change.policy} — refused: {change.refused}") + "\n")
        return f"refused: {change.refused}"
    url = connector.client.url(f"v1/{resource_path(change.policy)}")
    try:
        before = connector.policy(change.policy)
    except ApiError as exc:
        audit.write("failed", **fields, outcome=f"failed: {exc}")
        return f"failed: {exc}"
    after = blocked_policy(before, change.packages)
    call = f"PATCH {url}?updateMask={UPDATE_MASK}"
    body = {"applications": after["applications"]}
    if after == before:
        audit.write("done", **fields, outcome="already blocked in the policy")
        return f"already blocked in policy {change.policy}"
    if dry_run:
        out.write(f"mdm plan: {printable(call)}\n  before: {json.dumps(before, sort_keys=True)}\n"
                  f"  after:  {json.dumps(after, sort_keys=True)}\n  body:   {json.dumps(body, sort_keys=True)}\n")
        audit.write("dry-run", **fields, outcome="dry-run", detail=call)
        return "dry-run"
    audit.write("planned", **fields, detail=call)
    try:
        connector.client.send_json("PATCH", url, body, params={"updateMask": UPDATE_MASK})
    except ApiError as exc:
        audit.write("failed", **fields, outcome=f"failed: {exc}", detail=call)
        log_event(logger, logging.ERROR, "mdm.block_failed", policy=change.policy, error=str(exc))
        return f"failed: {exc}"
    audit.write("done", **fields, outcome="blocked in policy", detail=call)
    log_event(logger, logging.WARNING, "mdm.blocked", policy=change.policy, app=fields["app"], rule=fields["entry"])
    return f"blocked in policy {change.policy}"


def _write(artefact: Artefact, folder: Path, audit: AuditLog, out: TextIO, dry_run: bool) -> str:
    """Write one import artefact (a dry run prints it) and say which API call would apply it."""
    path = folder / artefact.name
    fields = {"action": "mdm-artefact", "mdm": artefact.mdm, "target": str(path),
              "entry": ",".join(dict.fromkeys(f.entry.id for f in artefact.findings)), "detail": artefact.call}
    if dry_run:
        out.write(printable(f"mdm plan: write {path} for {artefact.mdm} (a later version would call: {artefact.call})") + "\n")
        out.write("\n".join(map(printable, artefact.content.decode("utf-8").splitlines())) + "\n")
        audit.write("dry-run", **fields, outcome="dry-run")
        return "dry-run"
    try:
        write_atomic(path, artefact.content, mode=0o644, parents=True)
    except OSError as exc:
        audit.write("failed", **fields, outcome=f"failed: {exc}")
        return f"failed: {exc}"
    audit.write("done", **fields, outcome="artefact written")
    out.write(printable(f"mdm: wrote {path}: import it in {artefact.mdm} (the API call: {artefact.call})") + "\n")
    return f"import {path} in {artefact.mdm}"

