"""Inventories saved earlier (`appban inventory --format json`), so a central server can check
inventories collected elsewhere without collecting anything itself."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from agent import __version__
from agent.errors import UserError
from agent.gcpause import paused_gc
from agent.match import CONTENT, Content
from agent.model import LOCAL_DEVICE, App, CollectorError, Device, Inventory, build_record
from agent.schema import parse_timestamp

if TYPE_CHECKING:
    from agent.tally import Tally
    from agent.wire import WireInventory

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
    records = tuple(apps)
    return _assemble(devices, records, errors, tuple(str(n) for n in data.get("notes") or ()), collected_at,
                     {a.device for a in records})


def _assemble(devices: tuple[Device, ...], apps: tuple[App, ...], errors: tuple[CollectorError, ...],
              notes: tuple[str, ...], collected_at: datetime | None, named: set[str]) -> Inventory:
    """Return the Inventory of a document's records; a device its apps name (`named`: their
    device ids) but the document does not describe gets a bare record."""
    known = {d.id for d in devices}
    devices += tuple(Device(id=i) for i in sorted(named - known))
    return Inventory(devices=devices, apps=apps, errors=errors, notes=notes, collected_at=collected_at)


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
        devices=tuple(merge_device(same) for same in by_id.values()),
        apps=tuple(dict.fromkeys(a for p in parts for a in p.apps)),
        errors=tuple(dict.fromkeys(e for p in parts for e in p.errors)),
        notes=tuple(dict.fromkeys(n for p in parts for n in p.notes)),
        collected_at=parts[0].collected_at if len(parts) == 1 else None,
    )


def merge_device(same: list[Device]) -> Device:
    """Merge the records of one device id: a bare record (only the id, as made for apps whose
    device a file does not describe) yields to a described one; empty facts are filled in."""
    if len(same) == 1 and _tidy(same[0]):
        return same[0]  # what the merge below gives for one record, at a tenth of the cost (10,000s of phones)
    described = [d for d in same if d != Device(id=d.id)] or same
    first = described[0]
    return replace(
        first,
        hostname=next((d.hostname for d in described if d.hostname), ""),
        os=next((d.os for d in described if d.os), ""),
        groups=tuple(dict.fromkeys(g for d in described for g in d.groups)),
        attributes=tuple(sorted({k: v for d in reversed(described) for k, v in d.attributes}.items())),
    )


def _tidy(device: Device) -> bool:
    """Whether a record's groups are unique and its attributes sorted by unique keys: then
    merging it with nothing gives it back unchanged."""
    keys = [key for key, _ in device.attributes]
    return len(set(device.groups)) == len(device.groups) and all(a < b for a, b in zip(keys, keys[1:]))


def load_inventory_file(path: str) -> Inventory:
    """Read an inventory file: appban JSON, or an MDM export (CSV, or a ZIP holding CSV), told
    apart by content. Raise InventoryFileError if unreadable or malformed."""
    what = f"inventory {path}"
    with paused_gc(), _reading(what):  # 100,000s of records, none in a reference cycle
        kind = _kind(path)
        if kind == "json":
            return _json_inventory(path, what)
        from agent.inventory import mdm  # csv and zipfile, here: the service renders inventories, never reads exports

        return (mdm.load_zip if kind == "zip" else mdm.load_csv)(path, what)


def inventory_chunks(path: str, devices: int = 500) -> Iterator[Inventory]:
    """Yield an inventory file as `load_inventory_file` reads it, an MDM export split into
    inventories of at most `devices` devices each (every device whole, in one of them) so a
    caller that stores device by device (the fleet's import) never holds the whole export's
    records. Raise InventoryFileError as load_inventory_file."""
    what = f"inventory {path}"
    with paused_gc(), _reading(what):
        kind = _kind(path)
        if kind == "json":
            chunks: Iterator[Inventory] = iter((_json_inventory(path, what),))
        else:
            from agent.inventory import mdm

            chunks = mdm.export_chunks(path, what, kind == "zip", devices)
    yield from chunks


def stream_inventory_file(path: str, into: Tally) -> datetime | None:
    """Read an inventory file into a streamed check (agent/tally.py): an MDM export row by row,
    an appban JSON document (one document, so read whole) record by record. Return when it was
    collected (None for an MDM export). Raise InventoryFileError as load_inventory_file."""
    what = f"inventory {path}"
    with paused_gc(), _reading(what):
        kind = _kind(path)
        if kind == "json":
            return _stream_json(path, what, into)
        from agent.inventory import mdm

        (mdm.stream_zip if kind == "zip" else mdm.stream_csv)(path, what, into)
    return None


def _kind(path: str) -> str:
    """Tell an inventory file's format by its first bytes: "zip", "json" or "csv"."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    return "json" if head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{") else "csv"


def _json_inventory(path: str, what: str) -> Inventory:
    raw = Path(path).read_bytes()
    typed = _typed_inventory(raw)
    return _lenient_inventory(raw, what) if typed is None else typed


def _stream_json(path: str, what: str, into: Tally) -> datetime | None:
    """Read an appban JSON document into a streamed check. A plain document (the typed path)
    goes to the Tally as (device, user, content) rows, so no App record is built for an app
    no entry names (at 100,000 apps, building them was a third of the check)."""
    raw = Path(path).read_bytes()
    typed = _typed_document(raw)
    if typed is None:
        inventory = _lenient_inventory(raw, what)
        into.inventory(inventory)
        return inventory.collected_at
    document, collected_at = typed
    into.inventory(_typed_shell(document, collected_at, (), {a.device or LOCAL_DEVICE for a in document.apps}))
    into.rows(_rows(document.apps))
    return collected_at


def _rows(apps: list[Any]) -> Iterator[tuple[str, str, Content]]:
    """Yield typed app records as a Tally's rows: (device, user, content), an empty device the
    local one. A WireApp's fields are a Content's with `extra` an object, then device and user."""
    from msgspec.structs import astuple

    extra = len(CONTENT) - 1
    for fields in map(astuple, apps):
        pairs = tuple(sorted(fields[extra].items())) if fields[extra] else ()  # `_pairs`, without a call per record
        yield fields[extra + 1] or LOCAL_DEVICE, fields[extra + 2], fields[:extra] + (pairs,)


def _lenient_inventory(raw: bytes, what: str) -> Inventory:
    """Read a document with `json` and `inventory_from_dict`: every leniency and every error
    message of the format (the typed path takes only the plain form)."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InventoryFileError(f"{what}: not valid JSON: {exc}") from None
    except RecursionError:
        raise InventoryFileError(f"{what}: not usable JSON: nested too deeply") from None
    return inventory_from_dict(data, what)


def _typed_inventory(raw: bytes) -> Inventory | None:
    """Return the Inventory of a plain document read on the typed path (`_typed_document`), or
    None when that path does not take it."""
    typed = _typed_document(raw)
    if typed is None:
        return None
    document, collected_at = typed
    apps = tuple([_app(_fields(a)) for a in document.apps])
    return _typed_shell(document, collected_at, apps, {a.device for a in apps})


def _typed_document(raw: bytes) -> tuple[WireInventory, datetime | None] | None:
    """Return an `appban.inventory/v1` document decoded straight into typed records by msgspec,
    with when it was collected, or None when msgspec is not installed or the document is
    anything but the plain form appban writes (every field its JSON type, the right format); the
    caller then reads it with `json` and `inventory_from_dict`, so every error message and every
    leniency (a number where a string belongs, a non-object error record) stays exactly what it
    was.

    Why: at 100,000 apps, `json.loads` plus one `App.from_dict` per record was 2.5x `json.load`
    alone; msgspec checks the types while it parses, and its records are never tracked by the
    cyclic GC. What it accepts is a subset of what `json` accepts (no BOM, no NaN, no lone
    surrogates, strict UTF-8), and both keep the last of two duplicate keys, so a document it
    reads gives the same Inventory either way (tests/unit/test_inventory_file_typed.py)."""
    try:
        import msgspec

        from agent.wire import WireInventory
    except ImportError:
        return None
    try:
        document = msgspec.json.decode(raw, type=WireInventory)
    except msgspec.MsgspecError:
        return None
    if document.format != FORMAT:
        return None
    try:
        collected_at = parse_timestamp(document.collected_at) if document.collected_at else None
    except ValueError:
        return None
    return document, collected_at


def _typed_shell(document: WireInventory, collected_at: datetime | None, apps: tuple[App, ...],
                 named: set[str]) -> Inventory:
    """Return the Inventory of a typed document with `apps` (whose devices are `named`)."""
    devices = tuple(Device.from_dict(_fields(d)) for d in document.devices)
    return _assemble(devices, apps, tuple(CollectorError(e.collector, e.message, e.device) for e in document.errors),
                     tuple(document.notes), collected_at, named)


def _fields(record: Any) -> dict[str, Any]:
    """The fields of a typed (msgspec) record as a dict."""
    from msgspec.structs import asdict

    return asdict(record)


def _pairs(extra: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Extra facts as App keeps them: sorted pairs."""
    return tuple(sorted(extra.items())) if extra else ()


def _app(fields: dict[str, Any]) -> App:
    """The App of one typed record's fields, as App.from_dict makes it: an empty device is the
    local one, extra facts become sorted pairs."""
    fields["device"] = fields["device"] or LOCAL_DEVICE
    fields["extra"] = _pairs(fields["extra"])
    return build_record(App, fields)


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """Turn what reading a file can raise into the one-line InventoryFileError."""
    try:
        yield
    except OSError as exc:
        raise InventoryFileError(f"{what}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        # Imported on an error only: the CSV and ZIP readers (zipfile, shutil and the
        # compressors) cost ~20 ms to import, and reading an appban JSON file needs none of them.
        from agent.inventory.mdm import ExportError

        if not isinstance(exc, ExportError):
            raise
        raise InventoryFileError(str(exc)) from None
