"""Which agents may report devices other than themselves: the fleet administrator's `gateways`
grants (a lab machine with phones on USB, an MDM relay). Pure, so every grant can be tried in a
unit test.

A device token covers its own device; a grant widens it to devices of the granted kinds whose ids
match the granted globs, never to a `host` (an agent speaks for itself) and never to a device that
holds its own enrollment (checked by the caller against the database).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Callable, Iterable

from agent.fleet.config import GatewayGrant
from agent.model import Device


def may_report(grants: Iterable[GatewayGrant], gateway: str) -> Callable[[Device], bool]:
    """Given the fleet's grants and a pushing device id, return whether it may report a device."""
    mine = [g for g in grants if fnmatchcase(gateway, g.gateway)]

    def allowed(device: Device) -> bool:
        return device.kind != "host" and any(
            device.kind in g.kinds and any(fnmatchcase(device.id, pattern) for pattern in g.ids) for g in mine)

    return allowed


def carries_others(document: dict[str, object], host: str) -> bool:
    """Whether a pushed report names any device but its sender (in `devices` or its inventory):
    such a report always takes the full ingest, which checks the grants and marks every device seen."""
    inventory = document.get("inventory")
    listed = [document.get("devices"), inventory.get("devices") if isinstance(inventory, dict) else None]
    return any(isinstance(entry, dict) and entry.get("id") != host
               for devices in listed if isinstance(devices, list) for entry in devices)
