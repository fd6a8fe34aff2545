"""App inventories exported by a mobile-device-management system, as administrators have them.

Two CSV layouts are recognised by their header (names compared case-insensitively, a UTF-8 BOM
and `*_loc` localisation twins ignored), plain or inside the ZIP Intune delivers:

- Microsoft Intune's per-device app inventory, report `AppInvRawData` (ApplicationKey,
  ApplicationName, ApplicationPublisher, ApplicationShortVersion, ApplicationVersion, DeviceId,
  DeviceName, EmailAddress, OSDescription, OSVersion, Platform, UserId, UserName);
- appban's generic CSV: `device, platform, app_id, app_name, version`, optionally `device_name,
  publisher, os, user, serial, model, owner, email, department, category, groups` (groups
  separated by `;`), for any other MDM whose export can be reshaped to it.

Each row is one app on one device. The file is streamed row by row with the csv module (a 10,000
phone export has a million rows) into a sink (`Sink`): every row kept as an App (`_Accumulator`,
with the strings that repeat across devices interned), only counted and matched (agent.tally,
the check), or kept as one number per row for the fleet's import (`_Rows`).
"""

from __future__ import annotations

import csv
import io
from array import array
import operator
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator, Protocol

from agent.gcpause import paused_gc
from agent.inventory.gateway import pairs
from agent.model import App, CollectorError, Device, Inventory

INTUNE_NOTE = (
    "Intune's app inventory lists unmanaged (personally installed) apps only on company-owned "
    "devices: a personally owned phone shows managed apps only, an Android Enterprise work profile "
    "only its work-profile apps, and fully managed or dedicated Android devices none; a banned app "
    "in a personal space is not in this export. Intune refreshes it every 7 days."
)
_GENERIC_ATTRIBUTES = ("serial", "model", "owner", "email", "department", "category")
_DISPLAY = {"deviceid": "DeviceId", "applicationname": "ApplicationName", "platform": "Platform"}


class ExportError(ValueError):
    """An export that cannot be read; the message is one line naming the file and the problem."""


def normalized(name: str) -> str:
    """Return a header name as compared: case-folded, spaces and dashes as underscores."""
    return "_".join(name.strip().casefold().replace("-", " ").split())


def platform_source(platform: str) -> str:
    """Given an export's platform value, return the App source whose ban-list identifiers apply
    (`mdm` when unknown: such apps are matched by name and publisher only)."""
    text = platform.casefold()
    if "android" in text:
        return "android"
    if text.startswith(("ios", "ipados")) or "iphone" in text or "ipad" in text:
        return "ios"
    if "mac" in text:
        return "macos"
    if "windows" in text:
        return "windows"
    return "mdm"


@dataclass
class _Columns:
    """Which layout a header is, and the position of each (normalised) column it has."""

    layout: Layout
    index: dict[str, int]
    width: int

    def get(self, row: list[str], name: str) -> str:
        """Return one cell by column name, stripped ("" when the column or cell is absent)."""
        position = self.index.get(name, -1)
        return row[position].strip() if 0 <= position < len(row) else ""

    def picker(self, names: tuple[str, ...]) -> Callable[[list[str]], tuple[str, ...]]:
        """Return a function taking the named cells from a row padded with one "" cell (which
        stands in for the absent columns) — the fast path of a million-row export."""
        return operator.itemgetter(*(self.index.get(name, self.width) for name in names))


def read_header(header: list[str], what: str) -> _Columns:
    """Given the first CSV row, return its layout and column positions.

    Raise ExportError naming the first required column that is missing, or saying that the header
    is neither layout.
    """
    index: dict[str, int] = {}
    for position, name in enumerate(header):
        key = normalized(name)
        if key and not key.endswith("_loc"):
            index.setdefault(key, position)
    layout = next((la for la in (INTUNE, GENERIC) if set(la.signature) & index.keys()), None)
    if layout is None:
        raise ExportError(
            f"{what}: header is neither an {INTUNE.name} export nor the {GENERIC.name} CSV "
            f"(device, platform, app_id, app_name, version)"
        )
    for name in layout.required:
        if name not in index:
            raise ExportError(f"{what}: {layout.name} CSV lacks the column {_DISPLAY.get(name, name)}")
    return _Columns(layout, index, len(header))


class Sink(Protocol):
    """Where the reader puts what it reads: `device` once per device id and file, `proto` once
    per distinct app (its record with a placeholder device and no user), `run` when the rows
    move to another device or user, then the function `run` returned once per row with what
    `proto` returned. `_Accumulator` keeps every row as an App; agent.tally.Tally counts rows
    and keeps only the apps a ban list names, so a million-row export is checked without a
    million records."""

    errors: list[CollectorError]
    notes: list[str]

    def device(self, device: Device) -> Any: ...

    def proto(self, app: App) -> Any: ...

    def run(self, slot: Any, user: str) -> Callable[[Any], object]: ...


@dataclass
class _Accumulator:
    """Devices, apps and problems gathered while streaming one or more CSV files."""

    devices: dict[str, Device] = field(default_factory=dict)
    apps: list[App] = field(default_factory=list)
    errors: list[CollectorError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def device(self, device: Device) -> Device:
        self.devices[device.id] = device
        return device

    def proto(self, app: App) -> App:
        return app

    def run(self, slot: Device, user: str) -> Callable[[App], None]:
        append, device, user = self.apps.append, slot.id, sys.intern(user)
        return lambda proto: append(_copy(proto, proto.source, device, user))

    def inventory(self) -> Inventory:
        return Inventory(
            devices=tuple(self.devices.values()), apps=tuple(self.apps),
            errors=tuple(self.errors), notes=tuple(dict.fromkeys(self.notes)),
        )


class _Rows:
    """An export's rows kept compactly — per device, one 8-byte (user, app) number per row in
    row order — to be handed on a few hundred devices at a time (`chunks`): the fleet stores
    a 10,000-phone export device by device without a million records in memory at once. The
    chunks hold exactly the devices and apps `_Accumulator` would, each device's apps in the
    same order."""

    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
        self.rows: dict[str, array[int]] = {}
        self.protos: list[App] = []
        self.users: dict[str, int] = {}
        self.errors: list[CollectorError] = []
        self.notes: list[str] = []

    def device(self, device: Device) -> array[int]:
        self.devices[device.id] = device
        rows = self.rows[device.id] = array("Q")
        return rows

    def proto(self, app: App) -> int:
        self.protos.append(app)
        return len(self.protos) - 1

    def run(self, slot: array[int], user: str) -> Callable[[int], None]:
        number = self.users.setdefault(sys.intern(user), len(self.users)) << 32
        append = slot.append
        return lambda proto: append(number | proto)

    def chunks(self, size: int) -> Iterator[Inventory]:
        """Yield the export as inventories of at most `size` devices each (errors and notes
        with the first); one, empty but for them, when no row had a device and an app."""
        ids, users = list(self.devices), list(self.users)
        for start in range(0, max(len(ids), 1), size):
            part = ids[start:start + size]
            apps = tuple(
                _copy(proto, proto.source, device, users[key >> 32])
                for device in part for key in self.rows[device] for proto in (self.protos[key & 0xFFFFFFFF],)
            )
            first = start == 0
            yield Inventory(devices=tuple(self.devices[d] for d in part), apps=apps,
                            errors=tuple(self.errors) if first else (),
                            notes=tuple(dict.fromkeys(self.notes)) if first else ())


def _domain(email: str) -> str:
    """The domain of an email address, which group rules use to tell organisations apart."""
    return email.rpartition("@")[2].casefold() if "@" in email else ""


def _intune_device(columns: _Columns, row: list[str], device_id: str, source: str) -> Device:
    email = columns.get(row, "emailaddress")
    attributes = {
        "owner": columns.get(row, "username"), "email": email, "email_domain": _domain(email),
        "user_id": columns.get(row, "userid"), "platform": columns.get(row, "platform"),
    }
    system = columns.get(row, "osdescription") or columns.get(row, "platform")
    return Device(
        id=device_id, hostname=columns.get(row, "devicename"), kind=source,
        os=f"{system} {columns.get(row, 'osversion')}".strip(),
        attributes=pairs(attributes),
    )


def _generic_device(columns: _Columns, row: list[str], device_id: str, source: str) -> Device:
    attributes = {name: columns.get(row, name) for name in _GENERIC_ATTRIBUTES}
    attributes["email_domain"] = _domain(attributes["email"])
    groups = tuple(g.strip() for g in columns.get(row, "groups").split(";") if g.strip())
    return Device(
        id=device_id, hostname=columns.get(row, "device_name"), kind=source,
        os=columns.get(row, "os"), groups=groups,
        attributes=pairs(attributes),
    )


@dataclass(frozen=True)
class Layout:
    """A CSV layout: the columns that identify it, those it needs, and where each fact is."""

    name: str
    signature: tuple[str, ...]
    required: tuple[str, ...]
    device: str
    app_id: str
    app_name: str
    versions: tuple[str, ...]
    """Version columns, best first (Intune: the marketing version, else the build)."""
    publisher: str
    user: str
    make_device: Callable[[_Columns, list[str], str, str], Device]


INTUNE = Layout(
    "Intune AppInvRawData", ("applicationname", "applicationkey", "applicationversion"),
    ("deviceid", "applicationname", "platform"), "deviceid", "applicationkey", "applicationname",
    ("applicationshortversion", "applicationversion"), "applicationpublisher", "username", _intune_device,
)
GENERIC = Layout(
    "appban generic", ("app_id", "app_name"), ("device", "platform", "app_id", "app_name", "version"),
    "device", "app_id", "app_name", ("version",), "publisher", "user", _generic_device,
)


def _copy(proto: App, source: str, device: str, user: str) -> App:
    """Return `proto` as seen on one device, without the frozen dataclass __init__: in a fleet
    export every app recurs on thousands of devices, and the constructor (eleven guarded
    assignments) was a third of the time of a million-row import. Equal to
    `dataclasses.replace(proto, source=source, device=device, user=user)` (a unit test holds it
    to that)."""
    app = object.__new__(App)
    app.__dict__.update(proto.__dict__, source=source, device=device, user=user)
    return app


def read_csv(stream: IO[str], what: str, into: Sink, known: dict[str, Any] | None = None) -> None:
    """Stream one CSV export into the sink: one app per row, one device per device id (`known`
    maps the ids already seen in this file — the other CSVs of one ZIP — to what the sink
    returned for them).

    Raise ExportError for an unknown or incomplete header, a decoding or CSV syntax error (one
    line with its line number); rows without a device or app are counted in one error (the rest
    of the file still counts).
    """
    reader = csv.reader(stream)
    try:
        header = next(reader, None)
        if header is None:
            raise ExportError(f"{what}: empty file")
        columns = read_header(header, what)
        skipped, first_skipped = _read_rows(reader, columns, into, {} if known is None else known)
    except UnicodeDecodeError:
        raise ExportError(f"{what}: not UTF-8 text (near line {reader.line_num + 1})") from None
    except csv.Error as exc:
        raise ExportError(f"{what}: line {reader.line_num}: {exc}") from None
    if skipped:
        into.errors.append(CollectorError(
            "mdm", f"{what}: {skipped} row(s) without a device id or app skipped (first on line {first_skipped})",
        ))
    if columns.layout is INTUNE:
        into.notes.append(INTUNE_NOTE)


def _read_rows(reader: Any, columns: _Columns, into: Sink, known: dict[str, Any]) -> tuple[int, int]:
    """The hot loop: hand every row's app to the sink; return (rows skipped, line of the first one).

    Rows are padded with one "" cell that stands for absent columns (when the header lacks one).
    An export lists a device's apps together, so the device is looked up and a sink run begun
    only when the id (or the user) changes; an app's facts without its device are read once per
    device kind into a prototype, and a row is then one lookup and one call of the run.
    """
    layout, intern, width = columns.layout, sys.intern, columns.width
    names = (layout.device, layout.user, layout.app_id, layout.app_name, layout.publisher, *layout.versions)
    pad = any(name not in columns.index for name in names)  # an absent column is read from the pad cell
    at_device, at_user = (columns.index.get(name, width) for name in names[:2])
    facts = columns.picker(names[2:])
    skipped, first_skipped = 0, 0
    by_kind: dict[str, dict[tuple[str, ...], Any]] = {}
    unknown: dict[tuple[str, ...], Any] = {}  # the prototypes of a device not described yet: none
    last, device_id, slot, protos, last_user, user, add = None, "", None, unknown, None, "", None
    for row in reader:
        if len(row) != width:
            row = (row + [""] * width)[:width] + [""]
        elif pad:
            row.append("")
        raw_id = row[at_device]
        if raw_id != last:  # a new device (or the next run of one seen before)
            last, device_id, last_user = raw_id, raw_id.strip(), None
            slot, kind = known.get(device_id, (None, ""))
            protos = by_kind.setdefault(kind, {}) if slot is not None else unknown  # (seen in an earlier CSV of a ZIP)
        if row[at_user] != last_user:
            last_user = row[at_user]
            user = last_user.strip()
            add = into.run(slot, user) if slot is not None else None
        key = facts(row)
        proto = protos.get(key)
        if proto is None:
            app_id, name, publisher, *versions = (value.strip() for value in key)
            if not (name or app_id) or not device_id:
                if any(row):
                    skipped += 1
                    first_skipped = first_skipped or reader.line_num
                continue
            if slot is None:  # a device's first row that has an app: describe it from this row
                device = layout.make_device(columns, row, intern(device_id), platform_source(columns.get(row, "platform")))
                slot, kind = known[device_id] = (into.device(device), device.kind)
                protos = by_kind.setdefault(kind, {})
                add = into.run(slot, user)
            proto = protos.get(key)
            if proto is None:
                proto = protos[key] = into.proto(App(
                    source=kind, id=intern(app_id or name), name=intern(name or app_id),
                    version=next((v for v in versions if v), ""), publisher=publisher,
                ))
        add(proto)  # type: ignore[misc]
    return skipped, first_skipped


def load_csv(path: str, what: str) -> Inventory:
    """Read a CSV export. Raise ExportError if unreadable or not a known layout."""
    into = _Accumulator()
    stream_csv(path, what, into)
    return into.inventory()


def load_zip(path: str, what: str) -> Inventory:
    """Read every CSV inside a ZIP export (Intune delivers one). Raise ExportError as stream_zip."""
    into = _Accumulator()
    stream_zip(path, what, into)
    return into.inventory()


def export_chunks(path: str, what: str, zipped: bool, size: int) -> Iterator[Inventory]:
    """Read a CSV or ZIP export and yield it `size` devices at a time (see `_Rows`).
    Raise ExportError as stream_csv and stream_zip."""
    into = _Rows()
    (stream_zip if zipped else stream_csv)(path, what, into)
    return into.chunks(size)


def stream_csv(path: str, what: str, into: Sink) -> None:
    """Stream a CSV export into a sink. Raise ExportError if unreadable or not a known layout."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream, paused_gc():
            read_csv(stream, what, into)
    except OSError as exc:
        raise ExportError(f"{what}: cannot read: {exc.strerror or exc}") from None


def stream_zip(path: str, what: str, into: Sink) -> None:
    """Stream every CSV inside a ZIP export into a sink. Raise ExportError if the archive is
    unreadable, holds no CSV, or a CSV is not a known layout."""
    try:
        with zipfile.ZipFile(path) as archive, paused_gc():
            members = sorted(n for n in archive.namelist() if n.casefold().endswith(".csv"))
            if not members:
                raise ExportError(f"{what}: the ZIP holds no .csv file")
            known: dict[str, Any] = {}  # one device across the archive's CSVs is one device
            for member in members:
                with archive.open(member) as raw:
                    stream = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                    read_csv(stream, f"{what} ({member})", into, known)
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ExportError(f"{what}: cannot read the ZIP: {exc}") from None
    except RuntimeError as exc:  # zipfile: a password, or (NotImplementedError) an unsupported compression
        raise ExportError(f"{what}: cannot read the ZIP: {' '.join(str(exc).split())}") from None
