"""Blocking through an MDM, planned: a pure function from findings and devices to policy changes
and import artefacts.

A policy in the Android Management API applies to every device enrolled with it, so blocking an
app there blocks it on all of them: a change is planned only when *every* device on that policy
is in scope of the entry as a violation (not advisory, not exempt, not of a kind or ownership the
entry leaves out, not of unknown ownership when the entry names one), and when the listing of
devices was complete; otherwise the plan says why not. Intune and Jamf changes are artefacts an
administrator imports (a compliance policy, a configuration profile), with the exact API call a
later version would make (rendered by the same code as `appban policy export`). The rails are the local ones: `enforcement.mode: block`, the
`protected` list, and `max_actions` counting each package blocked in each policy as one action.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from agent.config import EnforcementConfig
from agent.enforce.plan import is_protected, over_cap
from agent.export import intune as intune_export
from agent.export import mobileconfig
from agent.export.common import Provenance, Selection
from agent.match import scope_status
from agent.model import App, BanException, BanList, CollectorError, Device, Entry, Finding

EVIDENCE_ONLY = ("matched by name or publisher only: what a phone reports is evidence, not a package "
                 "to block in a policy (name the package in the entry's match.android)")
"""A display name is chosen by whoever built the app: blocking the package that carries it could
block any app on every device of the policy."""
MAX_NAMED = 3
"""Out-of-scope devices named in a refusal (the count says how many more)."""


def mdm_of(device: Device | None) -> str:
    """The connector a device was read through (`amapi`, `intune`, `jamf`), or "" for others."""
    return dict(device.attributes).get("mdm", "") if device is not None else ""


@dataclass(frozen=True)
class PolicyChange:
    """Packages to block in one AMAPI policy, for the findings on its devices (or why not)."""

    policy: str
    packages: tuple[str, ...]
    findings: tuple[Finding, ...]
    refused: str = ""


@dataclass(frozen=True)
class Artefact:
    """A file an MDM administrator imports, and the API call a later version would make with it."""

    mdm: str
    name: str
    content: bytes
    call: str
    findings: tuple[Finding, ...]


def _blocking(findings: Iterable[Finding], devices: Mapping[str, Device], config: EnforcementConfig, mdm: str) -> list[Finding]:
    return [f for f in findings if f.entry.action == "block" and f.status == "violation"
            and mdm_of(devices.get(f.device)) == mdm and config.mode == "block"]


def _out_of_scope(entry: Entry, device: Device, exceptions: tuple[BanException, ...], now: datetime) -> str:
    """Why a device on a shared policy may not have this entry blocked ("" when it may)."""
    if entry.ownership and device.ownership == "unknown":
        return "ownership unknown"
    scoped = scope_status(entry, device, App(source="android", id="", device=device.id), exceptions, now)
    if scoped is None:
        return "not in the entry's scope"
    return "" if scoped[0] == "violation" else scoped[0]


def plan_amapi(
    findings: Iterable[Finding], devices: Mapping[str, Device], errors: Iterable[CollectorError],
    exceptions: Mapping[str, tuple[BanException, ...]], config: EnforcementConfig, now: datetime,
    already: Mapping[str, int] | None = None,
) -> list[PolicyChange]:
    """Given findings, every device read (by id), the collection errors, the ban list's exceptions
    by entry, local enforcement config, the time and the actions this run already takes on the
    host (by kind), return the policy changes, refused ones with their reason; past the one cap
    (`max_actions`, for every kind of action) every change is refused."""
    by_policy: dict[str, list[Finding]] = defaultdict(list)
    for finding in _blocking(findings, devices, config, "amapi"):
        by_policy[dict(devices[finding.device].attributes).get("policy", "")].append(finding)
    incomplete = any(e.collector == "amapi" and not e.device for e in errors)
    changes = []
    for policy, items in sorted(by_policy.items()):
        named = [f for f in items if f.matched_by.startswith("android:")]
        if named:
            changes.append(_change(policy, named, devices, exceptions, config, now, incomplete))
        if len(named) < len(items):
            changes.append(PolicyChange(policy, (), tuple(f for f in items if f not in named), EVIDENCE_ONLY))
    blocked = sum(len(c.packages) for c in changes if not c.refused)
    reason = over_cap({**(already or {}), "policy-block": blocked}, config.max_actions) if blocked else ""
    if reason:
        changes = [c if c.refused else PolicyChange(c.policy, c.packages, c.findings, reason) for c in changes]
    return changes


def _change(
    policy: str, findings: list[Finding], devices: Mapping[str, Device],
    exceptions: Mapping[str, tuple[BanException, ...]], config: EnforcementConfig, now: datetime, incomplete: bool,
) -> PolicyChange:
    packages = tuple(sorted({f.app.id for f in findings if not is_protected(f.app, config.protected)}))
    if not policy:
        return PolicyChange(policy, packages, tuple(findings), "the device names no policy")
    if incomplete:
        return PolicyChange(policy, packages, tuple(findings),
                            "the device listing is incomplete (a page failed): cannot tell which devices share the policy")
    if not packages:
        return PolicyChange(policy, packages, tuple(findings), "protected by local config")
    sharing = [d for d in devices.values() if mdm_of(d) == "amapi" and dict(d.attributes).get("policy") == policy]
    for entry in {f.entry.id: f.entry for f in findings}.values():
        outside = [(d.id, why) for d in sharing
                   if (why := _out_of_scope(entry, d, exceptions.get(entry.id, ()), now))]
        if outside:
            named = ", ".join(f"{device} ({why})" for device, why in outside[:MAX_NAMED])
            more = f" and {len(outside) - MAX_NAMED} more" if len(outside) > MAX_NAMED else ""
            return PolicyChange(policy, packages, tuple(findings),
                                f"policy {policy} is shared with {len(outside)} device(s) outside entry "
                                f"{entry.id!r}: {named}{more}; give the in-scope devices their own policy")
    return PolicyChange(policy, packages, tuple(findings))


def blocked_policy(policy: dict[str, Any], packages: Iterable[str]) -> dict[str, Any]:
    """Return a copy of an AMAPI policy whose `applications[]` has `installType: BLOCKED` for each
    package: an existing entry for it keeps its other settings, every other entry stays as it was,
    and missing ones are appended (`BLOCKED` also removes an installed copy)."""
    after = copy.deepcopy(policy)
    applications = after.setdefault("applications", [])
    wanted = list(dict.fromkeys(packages))
    for item in applications:
        if isinstance(item, dict) and item.get("packageName") in wanted:
            item["installType"] = "BLOCKED"
    present = {item.get("packageName") for item in applications if isinstance(item, dict)}
    applications += [{"packageName": p, "installType": "BLOCKED"} for p in wanted if p not in present]
    return after


def _selection(findings: list[Finding], config: EnforcementConfig, banlist: BanList, now: datetime,
               kind: str) -> Selection | None:
    """The entries these findings block, as the scope selection the policy exporters render (so an
    artefact written here is the one `appban policy export` writes), or None when none names an
    identifier for the platform `kind`. The identifiers come from the ban list, never from what a
    device reported; an entry one of whose apps is protected by local config is left out whole."""
    protected = {f.entry.id for f in findings if is_protected(f.app, config.protected)}
    entries = tuple({f.entry.id: f.entry for f in findings
                     if f.entry.id not in protected and getattr(f.entry.match, kind)}.values())
    if not entries:
        return None
    provenance = Provenance(serial=banlist.serial, publisher=banlist.publisher, command="appban check --enforce")
    return Selection(entries, (), now, provenance)


def intune_artefacts(findings: Iterable[Finding], devices: Mapping[str, Device], config: EnforcementConfig,
                     banlist: BanList, now: datetime, base_url: str) -> list[Artefact]:
    """Per platform, the compliance policy with restricted apps that an Intune administrator
    imports (agent/export/intune.py: `iosCompliancePolicy` / `androidCompliancePolicy` with
    `restrictedApps`), marking a device with a banned app non-compliant."""
    by_kind: dict[str, list[Finding]] = defaultdict(list)
    for finding in _blocking(findings, devices, config, "intune"):
        by_kind[devices[finding.device].kind].append(finding)
    artefacts = []
    for kind, render in (("android", intune_export.render_android), ("ios", intune_export.render_ios)):
        selection = _selection(by_kind.get(kind, []), config, banlist, now, kind)
        if selection is not None:
            artefacts.append(Artefact(
                "intune", f"intune-compliance-{kind}.json", render(selection).text.encode(),
                f"POST {base_url}/v1.0/deviceManagement/deviceCompliancePolicies (body: this file), then "
                f"POST …/deviceCompliancePolicies/{{id}}/assign to the groups in scope", tuple(by_kind[kind])))
    return artefacts


def jamf_artefacts(findings: Iterable[Finding], devices: Mapping[str, Device], config: EnforcementConfig,
                   banlist: BanList, now: datetime, url: str) -> list[Artefact]:
    """The configuration profile (agent/export/mobileconfig.py: Restrictions payload
    `com.apple.applicationaccess`, honoured on supervised devices) a Jamf Pro administrator uploads
    as a mobile device configuration profile and scopes to the devices in scope."""
    items = [f for f in _blocking(findings, devices, config, "jamf") if devices[f.device].kind == "ios"]
    selection = _selection(items, config, banlist, now, "ios")
    if selection is None:
        return []
    return [Artefact("jamf", "jamf-restricted-apps.mobileconfig", mobileconfig.render(selection).text.encode(),
                     f"POST {url}/JSSResource/mobiledeviceconfigurationprofiles/id/0 (Classic API; XML "
                     "<configuration_profile> with this file as general.payloads and the devices in scope)",
                     tuple(items))]
