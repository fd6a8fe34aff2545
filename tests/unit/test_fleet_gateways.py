"""Gateway grants: which devices a pushing agent may report besides itself (pure)."""

from __future__ import annotations

from agent.fleet.config import GatewayGrant
from agent.fleet.gateways import carries_others, may_report
from agent.model import Device

GRANTS = (GatewayGrant("lab-gw-*", ("android",), ("R58*", "0123*")), GatewayGrant("mdm-relay", ("ios", "android")))


def test_a_grant_covers_its_gateways_kinds_and_ids_only() -> None:
    lab = may_report(GRANTS, "lab-gw-3")
    assert lab(Device("R58M31ABCDE", kind="android")) and lab(Device("0123456789ABCDEF", kind="android"))
    assert not lab(Device("HT7A1B234567", kind="android"))  # an id outside the globs
    assert not lab(Device("R58-ipad", kind="ios"))  # a kind outside the grant
    relay = may_report(GRANTS, "mdm-relay")
    assert relay(Device("00008101-000A1B2C3D4E001E", kind="ios")) and relay(Device("anything", kind="android"))
    assert not relay(Device("desk-1", kind="host"))  # an agent always speaks for itself
    assert not may_report(GRANTS, "desk-1")(Device("R58M31ABCDE", kind="android"))
    assert not may_report(GRANTS, "LAB-GW-3")(Device("R58M31ABCDE", kind="android"))  # ids are case-sensitive
    assert not may_report((), "lab-gw-3")(Device("R58M31ABCDE", kind="android"))


def test_a_report_naming_any_other_device_takes_the_full_ingest() -> None:
    own = {"devices": [{"id": "gw"}], "inventory": {"devices": [{"id": "gw"}], "apps": []}}
    assert not carries_others(own, "gw") and not carries_others({"devices": [{"id": "gw"}]}, "gw")
    assert carries_others({**own, "devices": [{"id": "gw"}, {"id": "phone"}]}, "gw")
    assert carries_others({**own, "inventory": {"devices": [{"id": "gw"}, {"id": "phone"}]}}, "gw")
    assert not carries_others({"devices": "junk", "inventory": ["junk"]}, "gw")  # refused later, by the parser
