"""The records every part of appban shares: apps, devices, ban lists, findings.

Plain frozen dataclasses with no I/O, so collectors, the matcher, the planner and the reporters can
be tested in isolation and a record can cross a process boundary as JSON without surprises.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import deque
from dataclasses import field
from agent.clock import datetime, timedelta, timezone
from itertools import repeat

from agent.domains import normalise_domains
from agent.records import dataclass
from agent.versions import parse_spec

TYPE_CHECKING = False  # typing's own costs ~14 M instructions of a check: imported for type checkers only
if TYPE_CHECKING:
    from typing import Any, Literal
else:
    from agent.hints import Literal

ID_PATTERN = r"[a-z0-9._-]+"


class Folded(tuple):
    """Case-folded identifiers that remember the list's own spelling in `spelled`.

    Why: appban compares identifiers case-insensitively, but the engines a list is exported to
    (MDMs, Santa) compare bundle ids and package names exactly, so an export needs the original."""

    spelled: tuple[str, ...]


def _lowered(values: tuple[str, ...]) -> tuple[str, ...]:
    """Identifiers compare case-insensitively, so they are folded once, when the list is read.
    Identifiers already folded stay the plain tuple they are (their spelling is themselves):
    a 10,000-entry list has 40,000 such lists, and a Folded carries a dictionary."""
    folded = tuple(map(str.casefold, values))
    if folded == values:
        return values
    remembered = Folded(folded)
    remembered.spelled = tuple(values)
    return remembered


def spelled(values: tuple[str, ...]) -> tuple[str, ...]:
    """Return identifiers as the ban list spelled them (for exports to case-sensitive engines)."""
    return getattr(values, "spelled", values)


def _valid_spec(text: str) -> str:
    parse_spec(text)
    return text


_IDS = {"check": _lowered}


def _strings(value: Any, key: str) -> tuple[str, ...]:
    """Return a JSON list as a tuple of strings. Raise TypeError naming `key` if it is not a list
    (a string would otherwise be split into letters: groups "ministers" read as no group at all)."""
    if not value:
        return ()
    if not isinstance(value, list):
        raise TypeError(f"{key!r} is not a list")
    return tuple(str(v) for v in value)

def build_record(cls: type[Any], values: dict[str, Any]) -> Any:
    """Return an instance of the frozen dataclass `cls` with `values` over its fields' defaults,
    without running its __init__ (which sets each field through object.__setattr__). Fields
    added later get their defaults here too, so adding a field stays a one-line change.

    When `values` names every field it becomes the instance's dictionary as it is (no copy: the
    bulk loads build 100,000s of records), so the caller must not change it afterwards."""
    record = object.__new__(cls)
    defaults = _defaults(cls)
    if len(values) != _field_count(cls):
        values = {**defaults, **values}
    object.__setattr__(record, "__dict__", values)
    return record


def build_records(cls: type[Any], records: list[dict[str, Any]]) -> list[Any]:
    """Return `build_record(cls, values)` for each of `records`, which all name the same fields.

    Why: a package database gives 100,000 records at once, and making each instance and giving it
    its dictionary in C loops (`map`) costs a fraction of a Python call per record."""
    if records and len(records[0]) != _field_count(cls):
        return [build_record(cls, values) for values in records]
    instances = list(map(object.__new__, repeat(cls, len(records))))
    deque(map(object.__setattr__, instances, repeat("__dict__"), records), maxlen=0)
    return instances


@functools.cache
def _defaults(cls: type[Any]) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


@functools.cache
def _field_count(cls: type[Any]) -> int:
    return len(dataclasses.fields(cls))


LOCAL_DEVICE = "local"
"""Placeholder device id that collectors of the local host use; the check replaces it with the
real device id, so a collector never has to know how the device is named in config."""

if TYPE_CHECKING:
    Status = Literal["violation", "advisory", "upcoming", "exempt"]
    """A finding's status (for type checkers: made at run time it would import typing)."""
STATUSES: tuple[Status, ...] = ("violation", "advisory", "upcoming", "exempt")

MATCH_KINDS: tuple[str, ...] = (
    "android", "ios", "macos", "windows", "deb", "rpm", "flatpak", "snap",
    "names", "publishers", "executables", "sha256", "domains",
)
"""The identifier lists an entry's `match` may hold, in the order the format documents them."""

DEVICE_KINDS: tuple[str, ...] = ("host", "android", "ios", "macos", "windows", "mdm")
"""The kinds a Device can be, which an entry's `device_kinds` names (a typo would silently make
an entry apply to nothing, so other words are refused)."""

if TYPE_CHECKING:
    Ownership = Literal["corporate", "personal", "unknown"]
    """Who owns a device: the directives cover government-issued devices, not personal ones."""


def _known_kinds(kinds: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [k for k in kinds if k not in DEVICE_KINDS]
    if unknown:
        raise ValueError(f"unknown device kind {unknown[0]!r} (known: {', '.join(DEVICE_KINDS)})")
    return kinds


@dataclass(frozen=True)
class Device:
    """A device that apps are installed on: the local host, or a phone seen through a gateway."""

    id: str
    hostname: str = ""
    kind: str = "host"
    os: str = ""
    groups: tuple[str, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()
    """Extra identity (serial, model, MDM owner, …) as sorted pairs, so the record stays hashable."""
    ownership: Literal["corporate", "personal", "unknown"] = "unknown"  # Ownership, spelt out to resolve at run time
    """corporate (government-issued), personal, or unknown when nothing said which."""

    def to_dict(self) -> dict[str, Any]:
        # Fields are strings and tuples of strings, so a shallow copy is what dataclasses.asdict's
        # recursive one gives, at a seventh of the cost (a 10,000-phone export has 10,000 devices).
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["groups"] = list(self.groups)
        data["attributes"] = dict(self.attributes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Device:
        return cls(
            id=str(data["id"]),
            hostname=str(data.get("hostname") or ""),
            kind=str(data.get("kind") or "host"),
            os=str(data.get("os") or ""),
            groups=_strings(data.get("groups"), "groups"),
            attributes=tuple(sorted((str(k), str(v)) for k, v in (data.get("attributes") or {}).items())),
            ownership=_ownership(data.get("ownership")),
        )


def _ownership(value: Any) -> Ownership:
    """Read a saved device's ownership; an absent or unknown word is `unknown`, never a guess."""
    return value if value in ("corporate", "personal") else "unknown"


@dataclass(frozen=True)
class App:
    """One installed (or running) app as one source sees it.

    `id` is the source's own identifier (package name, bundle id, store package name); `aliases`
    carries other identifiers the same source knows the app by (a package family name, an uninstall
    key), so the matcher can look every one of them up without knowing the source's quirks.
    """

    source: str
    id: str
    name: str = ""
    version: str = ""
    publisher: str = ""
    path: str = ""
    user: str = ""
    device: str = LOCAL_DEVICE
    aliases: tuple[str, ...] = ()
    sha256: str = ""
    extra: tuple[tuple[str, str], ...] = ()
    """Source-specific facts (architecture, pid, install state) as sorted pairs."""

    def to_dict(self) -> dict[str, Any]:
        # Read from the instance dictionary: a quarter faster than eleven attribute loads, and an
        # inventory document of 100,000 apps calls this 100,000 times.
        fields = self.__dict__
        data: dict[str, Any] = {
            "device": fields["device"], "source": fields["source"], "id": fields["id"], "name": fields["name"],
            "version": fields["version"], "publisher": fields["publisher"], "path": fields["path"],
            "user": fields["user"],
        }
        if fields["aliases"]:
            data["aliases"] = list(fields["aliases"])
        if fields["sha256"]:
            data["sha256"] = fields["sha256"]
        if fields["extra"]:
            data["extra"] = dict(fields["extra"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> App:
        """Return the App of one `appban.inventory/v1` record.

        Built like `on_device` (the instance dictionary filled directly, over the defaults of
        every field): a saved fleet inventory has 100,000s of records, and the frozen __init__
        (a setattr per field) was a third of reading one."""
        get = data.get
        extra = get("extra")
        return build_record(cls, {
            "source": str(data["source"]), "id": str(data["id"]), "name": str(get("name") or ""),
            "version": str(get("version") or ""), "publisher": str(get("publisher") or ""),
            "path": str(get("path") or ""), "user": str(get("user") or ""),
            "device": str(get("device") or LOCAL_DEVICE), "aliases": _strings(get("aliases"), "aliases"),
            "sha256": str(get("sha256") or ""),
            "extra": tuple(sorted((str(k), str(v)) for k, v in extra.items())) if extra else (),
        })

    def on_device(self, device: str) -> App:
        """Return a copy of this record on `device`.

        Why not `dataclasses.replace`: it re-runs field introspection and `__init__` per call, and
        every local app passes through here once per scan (0.5 s at 100,000 packages); copying the
        instance dictionary gives the same frozen record for a tenth of the cost.
        """
        clone = object.__new__(App)
        clone.__dict__.update(self.__dict__, device=device)
        return clone

    def extra_value(self, key: str) -> str:
        """Return one source-specific fact, or "" when the source did not record it.

        A scan of the few pairs, not a dict: the matcher asks this for every app."""
        for name, value in self.extra:
            if name == key:
                return value
        return ""


@dataclass(frozen=True)
class CollectorError:
    """A collector (or one device behind it) that could not be read; the rest of the run goes on."""

    collector: str
    message: str
    device: str = ""

    def to_dict(self) -> dict[str, str]:
        data = {"collector": self.collector, "message": self.message}
        if self.device:
            data["device"] = self.device
        return data


@dataclass(frozen=True)
class Match:
    """An entry's identifier lists, lower-cased at parse time (identifiers compare case-insensitively)."""

    android: tuple[str, ...] = field(default=(), metadata=_IDS)
    ios: tuple[str, ...] = field(default=(), metadata=_IDS)
    macos: tuple[str, ...] = field(default=(), metadata=_IDS)
    windows: tuple[str, ...] = field(default=(), metadata=_IDS)
    deb: tuple[str, ...] = field(default=(), metadata=_IDS)
    rpm: tuple[str, ...] = field(default=(), metadata=_IDS)
    flatpak: tuple[str, ...] = field(default=(), metadata=_IDS)
    snap: tuple[str, ...] = field(default=(), metadata=_IDS)
    names: tuple[str, ...] = field(default=(), metadata=_IDS)
    publishers: tuple[str, ...] = field(default=(), metadata=_IDS)
    executables: tuple[str, ...] = field(default=(), metadata=_IDS)
    sha256: tuple[str, ...] = field(default=(), metadata={"check": _lowered, "pattern": r"[0-9a-fA-F]{64}"})
    team_ids: tuple[str, ...] = field(default=(), metadata={"check": _lowered, "pattern": r"[A-Za-z0-9]{10}"})
    """Apple Developer Team IDs (10 characters): everything that team signs, for macOS engines
    that see code signatures (the Santa export's TEAMID rules); a scanned volume's apps carry none."""
    signing_ids: tuple[str, ...] = field(default=(), metadata={
        "check": _lowered, "pattern": r"(?:[A-Za-z0-9]{10}|platform):[^\s:]+"})
    """macOS signing IDs as Santa writes them, `TEAMID:signing.id` (`platform:…` for Apple's own),
    for the Santa export's SIGNINGID rules."""
    cdhashes: tuple[str, ...] = field(default=(), metadata={"check": _lowered, "pattern": r"[0-9a-fA-F]{40}"})
    """macOS code directory hashes (40 hex digits, as `codesign -dvvv` shows CDHash), for CDHASH rules."""
    domains: tuple[str, ...] = field(default=(), metadata={"check": normalise_domains})
    """The service's DNS names (`example.com`, or `*.example.com` for it and every name below it),
    for the resolver and hosts-file exports and on-device network blocking; apps never match them."""


@dataclass(frozen=True)
class Entry:
    """One banned app (or vendor family) as a directive words it."""

    id: str = field(metadata={"pattern": ID_PATTERN})
    name: str
    match: Match = field(default_factory=Match)
    vendor: str = ""
    reason: str = ""
    references: tuple[str, ...] = ()
    effective: datetime | None = None
    action: Literal["report", "block"] = "report"
    applies_to: tuple[str, ...] | None = None
    advisory_for: tuple[str, ...] = ()
    exempt: tuple[str, ...] = ()
    versions: str = field(default="", metadata={"check": _valid_spec})
    device_kinds: tuple[str, ...] = field(default=(), metadata={"check": _known_kinds})
    """Device kinds the entry covers (android, ios, …); empty means every kind."""
    ownership: tuple[Literal["corporate", "personal"], ...] = ()
    """Ownerships the entry covers; empty means both ("government-issued" is `[corporate]`)."""


@dataclass(frozen=True)
class BanException:
    """A documented, individual exception (real directives forbid blanket ones)."""

    entry: str
    approved_by: str
    reason: str
    expires: datetime
    devices: tuple[str, ...] = ()
    users: tuple[str, ...] = ()


@dataclass(frozen=True)
class BanList:
    """A parsed, validated `appban.banlist/v1` document."""

    format: str
    serial: int
    issued: datetime
    entries: tuple[Entry, ...]
    expires: datetime | None = None
    publisher: str = ""
    exceptions: tuple[BanException, ...] = ()


@dataclass(frozen=True)
class BanListInfo:
    """Where the list in force came from and how far it can be trusted, for every report."""

    serial: int
    source: str
    signed: bool
    stale: bool = False
    stale_since: datetime | None = None
    signer: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "serial": self.serial, "source": self.source, "signed": self.signed, "stale": self.stale,
            "stale_since": self.stale_since.isoformat() if self.stale_since else None,
            "signer": self.signer or None,
        }


@dataclass(frozen=True)
class Finding:
    """One app matched by one entry on one device, with the status its scope gives it."""

    status: Literal["violation", "advisory", "upcoming", "exempt"]  # Status, spelt out to resolve at run time
    entry: Entry
    app: App
    device: str
    matched_by: str
    exception: BanException | None = None
    outcome: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status, "entry": self.entry.id, "name": self.entry.name,
            "action": self.entry.action, "device": self.device, "reason": self.entry.reason,
            "references": list(self.entry.references), "matched_by": self.matched_by,
            "app": self.app.to_dict(),
        }
        if self.entry.effective is not None:
            data["effective"] = self.entry.effective.isoformat()
        if self.exception is not None:
            data["exception"] = {
                "approved_by": self.exception.approved_by, "reason": self.exception.reason,
                "expires": self.exception.expires.isoformat(),
            }
        if self.outcome:
            data["outcome"] = self.outcome
        return data


@dataclass(frozen=True)
class Inventory:
    """Everything collected in one run: devices, their apps, and what could not be read."""

    devices: tuple[Device, ...]
    apps: tuple[App, ...]
    errors: tuple[CollectorError, ...] = ()
    notes: tuple[str, ...] = ()
    """Blind spots worth telling the reader (e.g. what an MDM export cannot see)."""
    collected_at: datetime | None = None
    """When the collectors ran (None for inventories merged from several files)."""
    counted: tuple[tuple[str, int], ...] | None = None
    """Apps per device id when they were matched as they streamed and not kept (`apps` is then
    empty): a check of a million-row MDM export reports them without holding a million records."""


def app_counts(inventory: Inventory) -> dict[str, int]:
    """Return how many apps each device has, for reports and metrics."""
    counts = {device.id: 0 for device in inventory.devices}
    if inventory.counted is not None:
        counts.update(inventory.counted)
        return counts
    for app in inventory.apps:
        counts[app.device] = counts.get(app.device, 0) + 1
    return counts


def app_total(inventory: Inventory) -> int:
    """Return how many apps the inventory read, whether it kept them or only counted them."""
    if inventory.counted is not None:
        return sum(n for _, n in inventory.counted)
    return len(inventory.apps)


def aware(moment: datetime) -> datetime:
    """Return `moment` with a time zone, reading a naive one as UTC, so comparisons never raise."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def staleness(banlist: BanList, now: datetime, max_age: timedelta) -> tuple[bool, datetime | None]:
    """Return (stale, since): a list past its `expires` is still used, but flagged everywhere; a
    list without `expires` is flagged the same way once it is older than `max_age` (config
    banlist.max_age), so a list that stopped being updated years ago does not look current."""
    ends = aware(banlist.expires) if banlist.expires is not None else aware(banlist.issued) + max_age
    if aware(now) > ends:
        return True, ends
    return False, None


@dataclass(frozen=True)
class Report:
    """The result of one check: what was found where, against which list, and what failed."""

    id: str
    generated: datetime
    agent_version: str
    banlist: BanListInfo
    inventory: Inventory
    findings: tuple[Finding, ...]

    @property
    def compliant(self) -> bool:
        """True when no finding is a violation (advisories, upcoming and exempt do not count)."""
        return not any(f.status == "violation" for f in self.findings)

    def counts(self) -> dict[str, int]:
        """Return the number of findings per status (every status present, zeros included)."""
        counts = dict.fromkeys(STATUSES, 0)
        for finding in self.findings:
            counts[finding.status] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """Return the `appban.report/v1` document."""
        apps = app_counts(self.inventory)
        return {
            "format": "appban.report/v1",
            "id": self.id,
            "generated": self.generated.isoformat(),
            "agent": {"version": self.agent_version},
            "banlist": self.banlist.to_dict(),
            "devices": [{**d.to_dict(), "apps": apps.get(d.id, 0)} for d in self.inventory.devices],
            "findings": [f.to_dict() for f in self.findings],
            "counts": self.counts(),
            "errors": [e.to_dict() for e in self.inventory.errors],
            "notes": list(self.inventory.notes),
            "complete": not self.inventory.errors,
            "compliant": self.compliant,
        }
