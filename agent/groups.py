"""Device groups for devices that are not the local host: phones seen through a gateway and the
devices of an MDM export.

The ban list scopes entries on groups (Québec: staff are banned, members of the Assembly only
advised, ministers banned), but a phone cannot carry an agent config saying which group it is in.
So the gateway's config maps devices to groups by serial, by name pattern or by MDM attribute; this
module applies those rules as a pure function after collection, so matching sees final groups.
"""

from __future__ import annotations

import fnmatch
from dataclasses import replace

from agent.config import GatewayConfig, GroupRule
from agent.model import Device, Inventory

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Iterable

SERIAL_ATTRIBUTES = ("serial", "udid", "adb_serial")
"""Attributes that hold a device's serial number under some source."""


def _any_glob(values: Iterable[str], patterns: Iterable[str]) -> bool:
    folded = [v.casefold() for v in values if v]
    return any(fnmatch.fnmatchcase(v, p.casefold()) for p in patterns for v in folded)


def rule_matches(rule: GroupRule, device: Device) -> bool:
    """Given a rule and a device, return True when every condition the rule states holds."""
    attributes = dict(device.attributes)
    if rule.kinds and device.kind.casefold() not in {k.casefold() for k in rule.kinds}:
        return False
    if rule.ownership and device.ownership not in rule.ownership:
        return False
    if rule.serials:
        own = {device.id.casefold(), *(attributes.get(a, "").casefold() for a in SERIAL_ATTRIBUTES)}
        own.discard("")  # a missing attribute is no serial: an empty one in a rule selects nothing
        if not own & {s.casefold() for s in rule.serials}:
            return False
    if rule.names and not _any_glob((device.id, device.hostname), rule.names):
        return False
    for key, patterns in rule.attributes.items():
        if not _any_glob((attributes.get(key, ""),), patterns):
            return False
    return True


def device_groups(device: Device, config: GatewayConfig) -> tuple[str, ...]:
    """Given a device that is not the local host, return its groups: the ones it already has (an
    MDM export's own groups) and those of the *first* matching rule, without repeats; a device
    left with none gets `default_groups`.

    First match wins, as in a firewall, so narrow rules (named ministers' phones) go before broad
    ones (the Assembly's email domain); a device in two groups gets a rule naming both.
    """
    rule = next((r for r in config.groups if rule_matches(r, device)), None)
    groups = tuple(dict.fromkeys(device.groups + (rule.groups if rule else ())))
    return groups or config.default_groups


def assign_groups(inventory: Inventory, config: GatewayConfig, local: str | None) -> Inventory:
    """Return the inventory with groups set on every device but the local host (`local`, None
    when the inventory was loaded from files and no device is this host)."""
    if not config.groups and not config.default_groups:
        return inventory
    devices = tuple(
        d if d.id == local else replace(d, groups=device_groups(d, config)) for d in inventory.devices
    )
    return replace(inventory, devices=devices)
