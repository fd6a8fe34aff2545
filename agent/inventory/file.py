"""Inventories saved earlier (`appban inventory --format json`), so a central server can check
inventories collected elsewhere without collecting anything itself."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from agent import __version__
from agent.errors import UserError
from agent.gcpause import paused_gc
from agent.model import App, CollectorError, Device, Inventory
from agent.schema import parse_timestamp

FORMAT = "appban.inventory/v1"


class InventoryFileError(UserError):
    """An inventory file that cannot be used; one line naming the file and the problem."""


def inventory_to_dict(inventory: Inventory) -> dict[str, Any]:
    """Return the `appban.inventory/v1` document for an inventory: when it was collected (ISO
    8601, null when unknown) and by which agent, then its records."""
    return {
        "format": FORMAT,
        "collected_at": inventory.collected_at.isoformat() if inventory.collected_at else None,
        "agent": {"version": __version__},
        "devices": [d.to_dict() for d in inventory.devices],
        "apps": [a.to_dict() for a in inventory.apps],
        "errors": [e.to_dict() for e in inventory.errors],
        "notes": list(inventory.notes),
    }


def inventory_from_dict(data: Any, what: str) -> Inventory:
    """Given a parsed `appban.inventory/v1` document, return the Inventory.

    Raise InventoryFileError naming the record at fault.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InventoryFileError(f"{what}: not an {FORMAT} document (field 'format')")
    for key in ("devices", "apps", "errors", "notes"):
        if not isinstance(data.get(key) or [], list):
            raise InventoryFileError(f"{what}: field {key!r} is not a list")
    try:
        devices = tuple(Device.from_dict(d) for d in data.get("devices") or ())
    except (KeyError, TypeError, AttributeError) as exc:
        raise InventoryFileError(f"{what}: bad device record: {exc}") from None
    apps = []
    for number, record in enumerate(data.get("apps") or (), 1):
        try:
            apps.append(App.from_dict(record))
        except (KeyError, TypeError, AttributeError) as exc:
            raise InventoryFileError(f"{what}: app #{number}: missing or bad field {exc}") from None
    errors = tuple(
        CollectorError(str(e.get("collector", "")), str(e.get("message", "")), str(e.get("device", "")))
        for e in data.get("errors") or () if isinstance(e, dict)
    )
    try:
        collected_at = parse_timestamp(data["collected_at"]) if data.get("collected_at") else None
    except ValueError as exc:
        raise InventoryFileError(f"{what}: field 'collected_at': {exc}") from None
    known = {d.id for d in devices}
    devices += tuple(Device(id=i) for i in sorted({a.device for a in apps} - known))
    return Inventory(devices=devices, apps=tuple(apps), errors=errors, notes=tuple(str(n) for n in data.get("notes") or ()),
                     collected_at=collected_at)


def merge_inventories(parts: Iterable[Inventory]) -> Inventory:
    """Given inventories read from several files, return them as one: a device id seen in more
    than one file is one device (its facts merged, the first file's winning), and an app record,
    error or note found twice counts once — so one phone in two overlapping MDM exports is not
    listed twice with every finding doubled. Devices are told apart by id only: two devices with
    the same hostname stay two."""
    parts = list(parts)
    by_id: dict[str, list[Device]] = {}
    for device in (d for p in parts for d in p.devices):
        by_id.setdefault(device.id, []).append(device)
    return Inventory(
        devices=tuple(_merge_device(same) for same in by_id.values()),
        apps=tuple(dict.fromkeys(a for p in parts for a in p.apps)),
        errors=tuple(dict.fromkeys(e for p in parts for e in p.errors)),
        notes=tuple(dict.fromkeys(n for p in parts for n in p.notes)),
        collected_at=parts[0].collected_at if len(parts) == 1 else None,
    )


def _merge_device(same: list[Device]) -> Device:
    """Merge the records of one device id: a bare record (only the id, as made for apps whose
    device a file does not describe) yields to a described one; empty facts are filled in."""
    described = [d for d in same if d != Device(id=d.id)] or same
    first = described[0]
    return replace(
        first,
        hostname=next((d.hostname for d in described if d.hostname), ""),
        os=next((d.os for d in described if d.os), ""),
        groups=tuple(dict.fromkeys(g for d in described for g in d.groups)),
        attributes=tuple(sorted({k: v for d in reversed(described) for k, v in d.attributes}.items())),
    )


def load_inventory_file(path: str) -> Inventory:
    """Read an inventory file: appban JSON, or an MDM export (CSV, or a ZIP holding CSV), told
    apart by content. Raise InventoryFileError if unreadable or malformed."""
    with paused_gc():  # 100,000s of records, none in a reference cycle
        return _load(path, f"inventory {path}")


def _load(path: str, what: str) -> Inventory:
    from agent.inventory.mdm import ExportError, load_csv, load_zip  # csv, zipfile: only to read a file

    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
        if head.startswith(b"PK\x03\x04"):
            return load_zip(path, what)
        if not head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{"):
            return load_csv(path, what)
        data = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise InventoryFileError(f"{what}: cannot read: {exc.strerror or exc}") from None
    except ExportError as exc:
        raise InventoryFileError(str(exc)) from None
    except ValueError as exc:
        raise InventoryFileError(f"{what}: not valid JSON: {exc}") from None
    except RecursionError:
        raise InventoryFileError(f"{what}: not usable JSON: nested too deeply") from None
    return inventory_from_dict(data, what)
