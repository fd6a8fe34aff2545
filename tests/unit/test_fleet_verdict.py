"""The central verdict (pure): central groups from the fleet's rules, re-matching with the agent's
matcher, drift as findings, and a state hash that changes exactly when storing would."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from agent.banlist.parse import parse_banlist
from agent.config import GroupRule
from agent.fleet.verdict import Claim, app_key, judge, make_policy
from agent.model import App, BanListInfo, Device, Inventory
from tests.service_support import BANLIST

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
LIST = parse_banlist(BANLIST.encode(), "test list")
RULES = [GroupRule(groups=("ministers",), attributes={"department": ["cabinet*"]})]
POLICY = make_policy(LIST, BanListInfo(7, "test", True, signer="key-A"), RULES, ("staff",))


def phone(device: str, department: str = "", groups: tuple[str, ...] = ()) -> Inventory:
    attributes = (("department", department),) if department else ()
    return Inventory(devices=(Device(device, kind="android", groups=groups, attributes=attributes),),
                     apps=(App("android", "com.example", device=device), App("dpkg", "wechat", name="WeChat", device=device)))


def test_groups_come_from_the_fleets_rules() -> None:
    cabinet, = judge(POLICY, phone("p1", "Cabinet Office"), {}, NOW)
    other, = judge(POLICY, phone("p2", "Transport"), {}, NOW)
    assert cabinet.device.groups == ("ministers",) and other.device.groups == ("staff",)
    assert [(f.entry, f.status) for f in cabinet.findings] == [("wechat", "violation")]
    assert [(f.entry, f.status) for f in other.findings] == [("wechat", "advisory")]
    assert not cabinet.compliant and other.compliant


def test_drift_in_serial_signer_and_groups_is_a_finding() -> None:
    claim = Claim("r1", "0.1", serial=6, signer="key-B", groups=("staff",))
    verdict, = judge(POLICY, phone("p1", "Cabinet Office", groups=("staff",)), {"p1": claim}, NOW)
    drift = {f.entry: f.app["name"] for f in verdict.findings if f.status == "drift"}
    assert drift == {"drift:serial": "reported 6, fleet expects 7", "drift:signer": "reported key-B, fleet expects key-A",
                     "drift:groups": "reported ['staff'], fleet expects ['ministers', 'staff']"}
    agreeing = Claim("r1", "0.1", serial=7, signer="key-A", groups=("staff",))
    verdict, = judge(POLICY, phone("p2", "Transport", groups=("staff",)), {"p2": agreeing}, NOW)
    assert not [f for f in verdict.findings if f.status == "drift"]


def test_state_hash_ignores_order_and_report_id_but_not_content() -> None:
    inv = phone("p1")
    shuffled = replace(inv, apps=tuple(reversed(inv.apps)))
    one, = judge(POLICY, inv, {"p1": Claim("r1", serial=7)}, NOW)
    two, = judge(POLICY, shuffled, {"p1": Claim("r2", serial=7)}, NOW)
    assert one.state_hash == two.state_hash
    upgraded = replace(inv, apps=(inv.apps[0], replace(inv.apps[1], version="4.0")))
    three, = judge(POLICY, upgraded, {"p1": Claim("r3", serial=7)}, NOW)
    assert three.state_hash != one.state_hash
    assert [f.key for f in three.findings] == [f.key for f in one.findings]  # an upgrade is the same finding
    newer = make_policy(replace(LIST, serial=8), BanListInfo(8, "test", True, signer="key-A"), RULES, ("staff",))
    four, = judge(newer, inv, {"p1": Claim("r1", serial=7)}, NOW)
    assert four.state_hash != one.state_hash


def test_the_same_program_twice_is_one_finding() -> None:
    app = App("process", "wechat", name="wechat", path="/opt/wechat", extra=(("pid", "1"),), device="h")
    twice = Inventory(devices=(Device("h"),), apps=(app, replace(app, extra=(("pid", "2"),))))
    listed = parse_banlist(BANLIST.replace("match: {deb: [wechat]}", "match: {executables: [wechat]}").encode(), "x")
    verdict, = judge(make_policy(listed, BanListInfo(7, "x", False), [], ("ministers",)), twice, {}, NOW)
    assert [(f.entry, f.key) for f in verdict.findings] == [("wechat", app_key(app))]
