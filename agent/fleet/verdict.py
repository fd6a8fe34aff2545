"""The central verdict: a pure function of (inventory, what the agent claimed, the fleet's policy,
the time).

The fleet does not trust an agent's own findings: it assigns groups with its own rules, re-matches
every inventory with the agent's matcher against the fleet's ban list, and records as findings of
their own (status `drift`) every place where the agent's report disagrees with the fleet — an older
list serial, another signer, local groups that differ (Zentral's drift check for Santa).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Iterable, Mapping

from agent.config import GatewayConfig, GroupRule
from agent.groups import device_groups
from agent.match import CompiledBanList, compile_banlist, match
from agent.model import App, BanList, BanListInfo, Device, Inventory

DRIFT = "drift"
FINDING_STATUSES = ("violation", "advisory", "upcoming", "exempt", DRIFT)


@dataclass(frozen=True)
class Policy:
    """What the fleet enforces: its ban list (compiled once) and its group rules."""

    banlist: BanList
    info: BanListInfo
    compiled: CompiledBanList
    rules: GatewayConfig
    fingerprint: str
    """Changes whenever a verdict could: the list's serial and signer, the rules."""


def make_policy(banlist: BanList, info: BanListInfo, rules: Iterable[GroupRule],
                default_groups: Iterable[str]) -> Policy:
    """Given the fleet's list, its info and group rules, return the Policy."""
    gateway = GatewayConfig(groups=tuple(rules), default_groups=tuple(default_groups))
    basis = repr((banlist.serial, banlist.issued.isoformat(), info.signer, gateway.groups, gateway.default_groups))
    return Policy(banlist, info, compile_banlist(banlist), gateway, hashlib.sha256(basis.encode()).hexdigest()[:32])


@dataclass(frozen=True)
class Claim:
    """What an agent's own report says about the list and groups it enforced."""

    report_id: str
    agent_version: str = ""
    serial: int | None = None
    signer: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class CentralFinding:
    """One finding of the central verdict, keyed per device by (entry, key)."""

    entry: str
    key: str
    status: str
    matched_by: str
    app: Mapping[str, Any]


@dataclass(frozen=True)
class DeviceVerdict:
    """One device as the fleet sees it after a report: groups, apps, findings and a state hash
    that is equal for two reports exactly when storing the second would change nothing."""

    device: Device
    agent_groups: tuple[str, ...]
    apps: tuple[App, ...]
    findings: tuple[CentralFinding, ...]
    claim: Claim | None
    state_hash: str

    @property
    def compliant(self) -> bool:
        return not any(f.status == "violation" for f in self.findings)


def app_key(app: App) -> str:
    """The identity of an app on a device across reports: a version upgrade is the same app."""
    return _digest([app.source, app.id, app.user, app.path])[:24]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def drift_findings(policy: Policy, claim: Claim | None, central_groups: tuple[str, ...]) -> list[CentralFinding]:
    """Return a `drift` finding for each way the agent's claim differs from the fleet's policy."""
    if claim is None:
        return []
    found = []
    checks = [
        ("serial", claim.serial, policy.banlist.serial),
        ("signer", claim.signer or "", policy.info.signer or ""),
        ("groups", sorted(g.casefold() for g in claim.groups), sorted(g.casefold() for g in central_groups)),
    ]
    for what, reported, expected in checks:
        if what == "signer" and not expected:
            continue  # the fleet's own list is unsigned: there is no signer to disagree with
        if reported != expected:
            app = {"source": "agent", "id": what, "name": f"reported {reported}, fleet expects {expected}"}
            found.append(CentralFinding(f"drift:{what}", _digest(what)[:24], DRIFT, what, app))
    return found


def judge(policy: Policy, inventory: Inventory, claims: Mapping[str, Claim], now: datetime,
          hashes: Mapping[str, str] | None = None) -> list[DeviceVerdict]:
    """Given an inventory (one agent's, or an MDM export's thousands of devices), the agents'
    claims by device id, the policy and the time, return one verdict per device.

    `hashes` gives devices a state hash computed by the caller from the raw input (a pushed
    report's `Pushed.input_hash`), so the next identical report is recognised before parsing."""
    by_device: dict[str, list[App]] = defaultdict(list)
    for app in inventory.apps:
        by_device[app.device].append(app)
    devices = {d.id: replace(d, groups=device_groups(d, policy.rules)) for d in inventory.devices}
    findings: dict[str, list[CentralFinding]] = defaultdict(list)
    seen: set[tuple[str, str, str]] = set()
    for finding in match(inventory.apps, devices, policy.compiled, now):
        key = app_key(finding.app)
        if (finding.device, finding.entry.id, key) in seen:
            continue  # the same program running twice is one finding
        seen.add((finding.device, finding.entry.id, key))
        findings[finding.device].append(CentralFinding(
            finding.entry.id, key, finding.status, finding.matched_by, finding.app.to_dict()))
    verdicts = []
    original = {d.id: d for d in inventory.devices}
    for device_id, device in devices.items():
        claim = claims.get(device_id)
        own = findings[device_id] + drift_findings(policy, claim, device.groups)
        apps = tuple(sorted(by_device.get(device_id, ()), key=lambda a: (a.source, a.id, a.user, a.path, a.version)))
        state = (hashes or {}).get(device_id) or _digest([
            original[device_id].to_dict(), [a.to_dict() for a in apps], policy.fingerprint,
            None if claim is None else [claim.agent_version, claim.serial, claim.signer, list(claim.groups)]])
        verdicts.append(DeviceVerdict(device, original[device_id].groups, apps, tuple(own), claim, state))
    return verdicts
