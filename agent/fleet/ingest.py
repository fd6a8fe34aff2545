"""Reading what agents send: a pushed or pulled `appban.report/v1` document (with the inventory
it was made from) into the inventory and the agent's claim the central verdict needs.

Pure, so every hostile input can be tried in a unit test; each refusal is a RefusedReport with
the HTTP status it earns and one line saying why.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import orjson

from agent.fleet.tables import ID, json_text
from agent.fleet.verdict import Claim
from agent.inventory.file import InventoryFileError, inventory_from_dict
from agent.model import App, Device, Inventory

REPORT_FORMAT = "appban.report/v1"
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
"""A JSON escape of NUL: \\u0000 after an even number of backslashes (an odd one is a literal backslash)."""
MAX_APPS = 200_000
DIGEST = re.compile(r"[0-9a-f]{64}")
"""An inventory digest as the fleet hands it out: a SHA-256 in lowercase hex."""


class RefusedReport(ValueError):
    """A report the fleet does not store: `status` is the HTTP answer, the message one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _text(value: Any, what: str, limit: int = ID) -> str:
    """An identifier that will be logged and shown: 1 to `limit` printable characters."""
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise RefusedReport(422, f"{what} must be 1 to {limit} printable characters")
    return value


@dataclass(frozen=True)
class Pushed:
    """A report read far enough to know who sent it and whether it says anything new."""

    report_id: str
    host: str
    claim: Claim
    document: dict[str, Any]

    @property
    def digest_only(self) -> bool:
        """Whether the report names its inventory by digest instead of carrying it (a
        differential push: the agent's inventory is the one the fleet acknowledged last)."""
        return "inventory_digest" in self.document

    @cached_property
    def inventory_digest(self) -> str:
        """The digest of the inventory the report carries (its `collected_at` left out: the time
        of every scan, not a change), or the one it names; "" for a report without an inventory.
        The fleet answers an accepted push with it, and the agent sends it in place of an
        unchanged inventory."""
        if self.digest_only:
            return str(self.document["inventory_digest"])
        inventory = self.document.get("inventory")
        if inventory is None:
            return ""
        if isinstance(inventory, dict) and "collected_at" in inventory:
            inventory = {key: value for key, value in inventory.items() if key != "collected_at"}
        # Keys in the order sent (the agent's order is fixed): sorting them cost more than the rest
        # of the fast path, and another order only means one slow ingest, never a wrong "unchanged".
        return hashlib.sha256(json_text(inventory).encode()).hexdigest()

    def input_hash(self, fingerprint: str) -> str:
        """A digest of everything the central verdict depends on but the report id: the
        inventory (by its digest, so a differential push hashes to what the full one did), the
        host's record, the agent's claim and the policy. Equal to the stored one, the report
        changes nothing and the server skips parsing the apps and matching them."""
        claim = self.claim
        basis = [self.inventory_digest, self.document["devices"][0], self.document.get("findings"),
                 claim.agent_version, claim.serial, claim.signer, list(claim.groups), fingerprint]
        return hashlib.sha256(json_text(basis).encode()).hexdigest()


def parse_report(body: bytes, device_id: str | None) -> tuple[str, Inventory, Claim]:
    """Given a report body and the device it must come from (None: any, for pulled reports),
    return (report id, inventory, claim).

    Raise RefusedReport: 400 not JSON, 422 not a usable report, 403 a report naming another device.
    """
    pushed = read_report(body, device_id)
    return pushed.report_id, report_inventory(pushed, strict=device_id is not None), pushed.claim


def read_report(body: bytes, device_id: str | None) -> Pushed:
    """Check a report's envelope (JSON, format, id, the reporting device) without reading its apps.

    Raise RefusedReport as parse_report does.
    """
    if b"\\u0000" in body:  # PostgreSQL text cannot hold NUL: shown as U+FFFD, like other control characters
        body = _NUL.sub(lambda found: found.group(0)[:-6] + b"\\ufffd", body)
    try:
        document = _decode(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RefusedReport(400, f"body is not JSON: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(document, dict) or document.get("format") != REPORT_FORMAT:
        raise RefusedReport(422, f"not an {REPORT_FORMAT} document (field 'format')")
    report_id = _text(document.get("id"), "field 'id'")
    reported = document.get("devices")
    if not isinstance(reported, list) or not reported or not isinstance(reported[0], dict):
        raise RefusedReport(422, "field 'devices' must list the reporting device first")
    host = _text(reported[0].get("id"), "field 'devices[0].id'")
    if device_id is not None and host != device_id:
        raise RefusedReport(403, f"report is for device {host!r}, token belongs to {device_id!r}")
    if "inventory_digest" in document and (
            "inventory" in document or not isinstance(document["inventory_digest"], str)
            or not DIGEST.fullmatch(document["inventory_digest"])):
        raise RefusedReport(422, "field 'inventory_digest' must be the 64 hex digits the fleet answered, "
                                 "and replaces field 'inventory'")
    return Pushed(report_id, host, _claim(document, report_id, reported[0]), document)


def _decode(body: bytes) -> Any:
    """Parse a body with orjson (three to four times the standard library's speed, and parsing
    is most of an unchanged push); what orjson refuses goes to the standard library, so the same
    bodies are accepted as before (NaN, a byte-order mark, lone surrogates) and a malformed one
    gets the standard library's message."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def report_inventory(pushed: Pushed, strict: bool, granted: Callable[[Device], bool] | None = None) -> Inventory:
    """Return the inventory of a read report; `strict` (a pushing device) refuses one that
    carries any other device but those `granted` allows (a gateway's phones). Raise
    RefusedReport (422 malformed, 403 another device, 413 too many apps)."""
    inventory = _inventory(pushed.document, pushed.report_id)
    if pushed.host not in {d.id for d in inventory.devices}:  # the reporting device is always stored
        try:
            host = Device.from_dict(pushed.document["devices"][0])
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise RefusedReport(422, f"report {pushed.report_id}: bad device record: {exc}") from None
        inventory = Inventory(devices=(host, *inventory.devices), apps=inventory.apps, errors=inventory.errors,
                              notes=inventory.notes)
    foreign = sorted(d.id for d in inventory.devices if d.id != pushed.host and not (granted and granted(d)))
    if foreign and strict:
        raise RefusedReport(403, f"report carries other devices ({', '.join(foreign[:3])}); a device pushes only its "
                                 "own, and a gateway only the phones the fleet's `gateways` config grants it")
    for device in inventory.devices:
        _text(device.id, "a device id")
    if len(inventory.apps) > MAX_APPS:
        raise RefusedReport(413, f"{len(inventory.apps)} apps in one report (at most {MAX_APPS})")
    return inventory


def _inventory(document: dict[str, Any], report_id: str) -> Inventory:
    """The inventory pushed with the report, or (an agent without push.inventory) the report's
    own devices and the apps its findings name, so at least those are re-checked centrally."""
    try:
        if "inventory" in document:
            return inventory_from_dict(document["inventory"], f"report {report_id}: inventory")
        devices = tuple(Device.from_dict(d) for d in document["devices"])
        apps = tuple(App.from_dict(f["app"]) for f in document.get("findings") or ())
    except InventoryFileError as exc:
        raise RefusedReport(422, str(exc)) from None
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise RefusedReport(422, f"report {report_id}: bad device or finding record: {exc}") from None
    return Inventory(devices=devices, apps=apps)


def _claim(document: dict[str, Any], report_id: str, host: dict[str, Any]) -> Claim:
    banlist = document.get("banlist") if isinstance(document.get("banlist"), dict) else {}
    agent = document.get("agent") if isinstance(document.get("agent"), dict) else {}
    serial = banlist.get("serial")
    groups = host.get("groups") if isinstance(host.get("groups"), list) else []
    return Claim(report_id=report_id, agent_version=str(agent.get("version") or "")[:64],
                 serial=serial if isinstance(serial, int) and not isinstance(serial, bool) else None,
                 signer=str(banlist.get("signer") or "")[:ID], groups=tuple(str(g) for g in groups))
