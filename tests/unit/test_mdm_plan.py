"""Blocking through an MDM, planned (pure): which AMAPI policies may be patched, the patch
itself, and the Intune / Jamf import artefacts."""

from __future__ import annotations

import json
import plistlib
from datetime import datetime, timezone

from agent.banlist.parse import parse_banlist
from agent.config import EnforcementConfig
from agent.enforce.mdm_plan import blocked_policy, intune_artefacts, jamf_artefacts, plan_amapi
from agent.match import compile_banlist, match
from agent.model import App, CollectorError, Device

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
POLICY = "enterprises/E/policies/gov"
BLOCK = EnforcementConfig(mode="block", max_actions=5)
LIST = """
format: appban.banlist/v1
serial: 7
issued: 2026-01-01T00:00:00Z
entries:
  - id: tiktok
    name: TikTok
    action: block
    applies_to: [staff]
    advisory_for: [deputies]
    ownership: [corporate]
    match: {android: [com.zhiliaoapp.musically], ios: [com.zhiliaoapp.musically], names: ["TikTok*"]}
  - id: wechat
    name: WeChat
    action: block
    match: {android: [com.tencent.mm]}
"""


def phone(number: int, policy: str = POLICY, groups=("staff",), ownership="corporate", mdm="amapi", kind="android") -> Device:
    return Device(f"enterprises/E/devices/{number}", kind=kind, groups=tuple(groups), ownership=ownership,
                  attributes=tuple(sorted({"mdm": mdm, "policy": policy}.items())))


def planned(devices, apps, config=BLOCK, errors=(), already=None):
    by_id = {d.id: d for d in devices}
    findings = match(apps, by_id, compile_banlist(parse_banlist(LIST.encode())), NOW)
    return plan_amapi(findings, by_id, errors, {}, config, NOW, already)


def tiktok(device: Device, package="com.zhiliaoapp.musically") -> App:
    return App(source="amapi", id=package, name="TikTok", device=device.id)


def test_a_policy_whose_devices_are_all_in_scope_gets_the_banned_packages_blocked():
    devices = [phone(1), phone(2)]
    (change,) = planned(devices, [tiktok(devices[0]), App(source="amapi", id="com.tencent.mm", device=devices[1].id)])
    assert (change.policy, change.packages, change.refused) == (POLICY, ("com.tencent.mm", "com.zhiliaoapp.musically"), "")


def test_a_policy_shared_with_out_of_scope_devices_is_left_and_the_plan_says_why():
    devices = [phone(1), phone(2, ownership="personal"), phone(3, groups=("deputies",)), phone(4, ownership="unknown"),
               phone(5, groups=("press",))]
    (change,) = planned(devices, [tiktok(devices[0])])
    assert change.refused == (
        f"policy {POLICY} is shared with 4 device(s) outside entry 'tiktok': enterprises/E/devices/2 (not in the "
        "entry's scope), enterprises/E/devices/3 (advisory), enterprises/E/devices/4 (ownership unknown) and 1 more; "
        "give the in-scope devices their own policy")


def test_devices_on_another_policy_do_not_matter_and_each_policy_is_planned_alone():
    devices = [phone(1), phone(2, policy="enterprises/E/policies/byod", ownership="personal")]
    changes = planned(devices, [tiktok(devices[0]), App(source="amapi", id="com.tencent.mm", device=devices[1].id)])
    assert [(c.policy, c.packages, c.refused) for c in changes] == [
        ("enterprises/E/policies/byod", ("com.tencent.mm",), ""), (POLICY, ("com.zhiliaoapp.musically",), "")]


def test_nothing_is_planned_in_report_mode_or_for_advisories_or_other_mdms():
    devices = [phone(1), phone(2, groups=("deputies",), policy="enterprises/E/policies/dep"), phone(3, mdm="intune")]
    assert planned(devices, [tiktok(d) for d in devices], config=EnforcementConfig(mode="report")) == []
    assert [c.policy for c in planned(devices, [tiktok(d) for d in devices])] == [POLICY]


def test_an_incomplete_listing_protected_packages_and_the_cap_refuse():
    devices = [phone(1)]
    failed_page = [CollectorError("amapi", "amapi: GET /v1/enterprises/E/devices: HTTP 503")]
    (change,) = planned(devices, [tiktok(devices[0])], errors=failed_page)
    assert change.refused.startswith("the device listing is incomplete")
    (change,) = planned(devices, [tiktok(devices[0])], config=EnforcementConfig(mode="block", protected=("com.zhiliaoapp.musically",)))
    assert change.refused == "protected by local config"
    two = [tiktok(devices[0]), App(source="amapi", id="com.tencent.mm", device=devices[0].id)]
    (change,) = planned(devices, two, already={"kill": 2, "uninstall": 2})
    assert change.refused == ("too many — refused (6 actions: 2 kill, 2 policy-block, 2 uninstall; "
                              "max_actions is 5 and covers every kind of action)")
    assert planned(devices, two, already={"uninstall": 3})[0].refused == ""


def test_the_patched_policy_keeps_every_other_application_entry():
    before = {"name": POLICY, "version": "3", "applications": [
        {"packageName": "com.microsoft.teams", "installType": "FORCE_INSTALLED"},
        {"packageName": "com.tencent.mm", "installType": "AVAILABLE", "managedConfiguration": {"a": 1}}]}
    after = blocked_policy(before, ["com.tencent.mm", "com.zhiliaoapp.musically"])
    assert after["applications"] == [
        {"packageName": "com.microsoft.teams", "installType": "FORCE_INSTALLED"},
        {"packageName": "com.tencent.mm", "installType": "BLOCKED", "managedConfiguration": {"a": 1}},
        {"packageName": "com.zhiliaoapp.musically", "installType": "BLOCKED"}]
    assert before["applications"][1]["installType"] == "AVAILABLE"  # the input is not changed
    assert blocked_policy(after, ["com.tencent.mm"]) == after


def test_intune_and_jamf_artefacts_are_the_policy_exports_of_the_entries_found():
    devices = [phone(1, mdm="intune", kind="ios"), phone(2, mdm="jamf", kind="ios"), phone(3, mdm="jamf", kind="ios")]
    apps = [App(source="intune", id="TikTok", name="TikTok", publisher="TikTok Ltd.", device=devices[0].id),
            App(source="jamf", id="com.zhiliaoapp.musically", name="TikTok", device=devices[1].id),
            App(source="jamf", id="com.tencent.mm", name="WeChat", device=devices[2].id)]
    by_id = {d.id: d for d in devices}
    banlist = parse_banlist(LIST.encode())
    findings = match(apps, by_id, compile_banlist(banlist), NOW)
    (intune,) = intune_artefacts(findings, by_id, BLOCK, banlist, NOW, "https://graph.microsoft.com")
    policy = json.loads(intune.content)
    assert intune.name == "intune-compliance-ios.json" and policy["@odata.type"] == "#microsoft.graph.iosCompliancePolicy"
    assert [(a["name"], a["appId"]) for a in policy["restrictedApps"]] == [("TikTok", "com.zhiliaoapp.musically")]
    assert intune.call.startswith("POST https://graph.microsoft.com/v1.0/deviceManagement/deviceCompliancePolicies")
    (jamf,) = jamf_artefacts(findings, by_id, BLOCK, banlist, NOW, "https://jamf.example.gov")
    profile = plistlib.loads(jamf.content)
    assert profile["PayloadContent"][0]["PayloadType"] == "com.apple.applicationaccess"
    # the WeChat entry names no iOS bundle id, so nothing a device reported is put in the profile
    assert profile["PayloadContent"][0]["blockedAppBundleIDs"] == ["com.zhiliaoapp.musically"]
    assert "/JSSResource/mobiledeviceconfigurationprofiles/id/0" in jamf.call
    protected = EnforcementConfig(mode="block", protected=("com.zhiliaoapp.musically",))
    assert jamf_artefacts(findings, by_id, protected, banlist, NOW, "https://jamf.example.gov") == []


def test_a_package_matched_by_its_display_name_only_is_never_blocked_in_a_policy():
    devices = [phone(1)]
    impostor = App(source="amapi", id="com.microsoft.teams", name="TikTok Lite", device=devices[0].id)
    changes = planned(devices, [impostor, tiktok(devices[0])])
    assert [(c.packages, c.refused[:40]) for c in changes] == [
        (("com.zhiliaoapp.musically",), ""), ((), "matched by name or publisher only: what ")]
    assert [f.app.id for f in changes[1].findings] == ["com.microsoft.teams"]
