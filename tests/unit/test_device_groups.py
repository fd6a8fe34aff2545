"""Group rules for devices that are not the local host (agent.groups), read from config."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, parse_config
from agent.groups import assign_groups, device_groups
from agent.model import Device, Inventory

QUEBEC = b"""
gateway:
  default_groups: [staff]
  groups:
    - groups: [ministers, assembly-members]
      serials: [R58M31ABCDE]
    - groups: [ministers]
      names: ["QC-MIN-*"]
    - groups: [assembly-members]
      attributes: {email: ["g.tremblay@assnat.qc.ca", "*.depute@assnat.qc.ca"]}
    - groups: [assembly-staff]
      kinds: [android, ios]
      attributes: {email_domain: [ASSNAT.QC.CA]}
"""


def _device(id: str = "d1", hostname: str = "", kind: str = "android", groups: tuple[str, ...] = (), **attrs: str) -> Device:
    return Device(id=id, hostname=hostname, kind=kind, groups=groups, attributes=tuple(sorted(attrs.items())))


@pytest.fixture(scope="module")
def gateway():
    return parse_config(QUEBEC, "test").gateway


@pytest.mark.parametrize(("device", "groups"), [
    (_device(id="emulator-5554", serial="r58m31abcde"), ("ministers", "assembly-members")),
    (_device(hostname="QC-MIN-07", kind="ios"), ("ministers",)),
    (_device(email="p.gagnon.depute@assnat.qc.ca"), ("assembly-members",)),
    (_device(email="g.tremblay@assnat.qc.ca", email_domain="assnat.qc.ca"), ("assembly-members",)),
    (_device(email="l.cote@assnat.qc.ca", email_domain="assnat.qc.ca"), ("assembly-staff",)),
    (_device(kind="windows", email_domain="assnat.qc.ca"), ("staff",)),
    (_device(groups=("security-research",)), ("security-research",)),
    (_device(hostname="QC-MIN-08", groups=("ministers", "comms")), ("ministers", "comms")),
])
def test_quebec_rules_first_match_wins(gateway, device: Device, groups: tuple[str, ...]) -> None:
    assert device_groups(device, gateway) == groups


def test_the_local_host_keeps_its_configured_groups(gateway) -> None:
    inventory = Inventory(devices=(_device(id="ws-1", kind="host", groups=("it",)), _device(id="p1")), apps=())
    assigned = assign_groups(inventory, gateway, local="ws-1")
    assert [d.groups for d in assigned.devices] == [("it",), ("staff",)]
    assert assign_groups(inventory, gateway, local=None).devices[0].groups == ("it",)


def test_a_rule_without_groups_is_refused() -> None:
    with pytest.raises(ConfigError, match="gateway.groups\\[0\\].groups"):
        parse_config(b"gateway:\n  groups:\n    - serials: [x]\n", "test")


@pytest.mark.parametrize("text", [b"gateway: {timeout: 0}\n", b"gateway: {parallel: -1}\n"])
def test_gateway_timeout_and_parallel_must_be_positive(text: bytes) -> None:
    with pytest.raises(ConfigError, match="must be above zero"):
        parse_config(text, "test")


def test_an_empty_serial_in_a_rule_selects_no_device_without_a_serial() -> None:
    config = parse_config(b"""
gateway:
  default_groups: [staff]
  groups:
    - groups: [security-research]
      serials: [""]
""", "test").gateway
    assert device_groups(_device(id="phone-without-serial-attribute"), config) == ("staff",)
