"""The read side: status, devices, findings and history as JSON-ready documents.

The CLI (on the database directly, or over the API), the JSON API and the web pages all call these,
so the three views can never disagree. Each query is a few aggregate statements over indexed
columns: `status` stays fast at 100,000 devices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import Connection, and_, exists, func, or_, select

from agent.fleet import tables as t
from agent.fleet.enrollment import events as enrollment_events
from agent.fleet.verdict import DRIFT
from agent.report.snapshot import iso_time as iso

STATUS_FORMAT = "appban.fleet-status/v1"
DEVICES_FORMAT = "appban.fleet-devices/v1"
FINDINGS_FORMAT = "appban.fleet-findings/v1"
HISTORY_FORMAT = "appban.fleet-history/v1"
DEVICE_FORMAT = "appban.fleet-device/v1"
ENTRY_STATUSES = ("violation", "advisory", "upcoming", "exempt")
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1000


@dataclass(frozen=True)
class Selection:
    """Filters shared by the device and finding views (empty: no filter)."""

    group: str = ""
    kind: str = ""
    device: str = ""
    entry: str = ""
    status: str = ""
    since: float | None = None
    noncompliant: bool = False
    stale: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def _in_group(group: str, column: Any) -> Any:
    g = t.device_groups
    return exists().where(g.c.device_id == column, g.c.group_name == group)


def status(connection: Connection, now: float, stale_after: float, entries: Sequence[str] = ()) -> dict[str, Any]:
    """Return the `appban.fleet-status/v1` document: device counts, per-entry device counts by
    status (every entry of `entries` listed, zeros included), per-group counts, list serials."""
    d, f = t.devices, t.findings
    cutoff = now - stale_after
    # Three counts, each answered from an index alone, rather than one scan of every device row.
    row = [connection.scalar(select(func.count()).select_from(d).where(*where))
           for where in ((), (d.c.last_seen < cutoff,), (d.c.compliant.is_(False),))]
    per_entry: dict[str, dict[str, int]] = {e: dict.fromkeys(ENTRY_STATUSES, 0) for e in entries}
    current = f.c.resolved_at.is_(None)
    for entry, state, count in connection.execute(
            select(f.c.entry, f.c.status, func.count(func.distinct(f.c.device_id)))
            .where(current, f.c.status != DRIFT).group_by(f.c.entry, f.c.status)):
        per_entry.setdefault(entry, dict.fromkeys(ENTRY_STATUSES, 0))[state] = count
    drift = connection.scalar(select(func.count(func.distinct(f.c.device_id))).where(current, f.c.status == DRIFT))
    serials = {str(serial): count for serial, count in connection.execute(
        select(d.c.banlist_serial, func.count()).where(d.c.banlist_serial.is_not(None)).group_by(d.c.banlist_serial))}
    g = t.device_groups
    bad = dict(connection.execute(select(g.c.group_name, func.count()).join(d, d.c.id == g.c.device_id)
                                  .where(d.c.compliant.is_(False)).group_by(g.c.group_name)).all())
    groups = [{"group": name, "devices": total, "noncompliant": bad.get(name, 0)} for name, total in connection.execute(
        select(g.c.group_name, func.count()).group_by(g.c.group_name).order_by(g.c.group_name))]
    return {
        "format": STATUS_FORMAT,
        "generated": iso(now),
        "devices": {"total": row[0], "reporting": row[0] - row[1], "stale": row[1], "noncompliant": row[2],
                    "drift": drift or 0},
        "entries": [{"entry": e, **counts} for e, counts in sorted(per_entry.items())],
        "groups": groups,
        "banlist_serials": dict(sorted(serials.items())),
    }


def _device_record(row: Any, cutoff: float, violations: int) -> dict[str, Any]:
    return {
        "id": row.id, "hostname": row.hostname, "kind": row.kind, "os": row.os, "groups": json.loads(row.groups),
        "agent_groups": json.loads(row.agent_groups), "attributes": json.loads(row.attributes),
        "source": row.source, "agent_version": row.agent_version or None, "banlist_serial": row.banlist_serial,
        "banlist_signer": row.banlist_signer or None, "compliant": bool(row.compliant),
        "stale": row.last_seen < cutoff, "violations": violations, "first_seen": iso(row.first_seen),
        "last_seen": iso(row.last_seen), "last_report": row.last_report_id or None, "reports": row.reports,
        "reported_by": row.reported_by or None,
    }


def devices(connection: Connection, now: float, stale_after: float, selection: Selection) -> dict[str, Any]:
    """Return the `appban.fleet-devices/v1` document for the selected devices (paged)."""
    d, f = t.devices, t.findings
    cutoff = now - stale_after
    where = []
    if selection.noncompliant:
        where.append(d.c.compliant.is_(False))
    if selection.stale:
        where.append(d.c.last_seen < cutoff)
    if selection.kind:
        where.append(d.c.kind == selection.kind)
    if selection.group:
        where.append(_in_group(selection.group, d.c.id))
    if selection.device:
        where.append(d.c.id == selection.device)
    violations = (select(func.count()).where(f.c.device_id == d.c.id, f.c.status == "violation",
                                             f.c.resolved_at.is_(None)).scalar_subquery())
    total = connection.scalar(select(func.count()).select_from(d).where(*where))
    # Stale devices oldest first: the last_seen index then serves the filter and the order.
    order = (d.c.last_seen, d.c.id) if selection.stale else (d.c.id,)
    rows = connection.execute(select(d, violations.label("violations")).where(*where).order_by(*order)
                              .limit(_limit(selection)).offset(max(selection.offset, 0)))
    return {"format": DEVICES_FORMAT, "generated": iso(now), "total": total,
            "devices": [_device_record(r, cutoff, r.violations) for r in rows]}


def _limit(selection: Selection) -> int:
    return min(max(selection.limit, 1), MAX_LIMIT)


def findings(connection: Connection, now: float, selection: Selection) -> dict[str, Any]:
    """Return the `appban.fleet-findings/v1` document: current findings (status `resolved`:
    those resolved) matching the selection, with when each appeared, was last seen, was resolved."""
    f, d = t.findings, t.devices
    where = [f.c.resolved_at.is_not(None) if selection.status == "resolved" else f.c.resolved_at.is_(None)]
    if selection.status and selection.status != "resolved":
        where.append(f.c.status == selection.status)
    if selection.entry:
        where.append(f.c.entry == selection.entry)
    if selection.device:
        where.append(f.c.device_id == selection.device)
    if selection.group:
        where.append(_in_group(selection.group, f.c.device_id))
    if selection.kind:
        where.append(d.c.kind == selection.kind)
    if selection.since is not None:
        where.append(or_(f.c.first_seen >= selection.since, f.c.resolved_at >= selection.since))
    query = select(f, d.c.last_seen.label("device_seen")).join(d, d.c.id == f.c.device_id).where(and_(*where))
    total = connection.scalar(select(func.count()).select_from(query.subquery()))
    rows = connection.execute(query.order_by(f.c.device_id, f.c.entry, f.c.app_key)
                              .limit(_limit(selection)).offset(max(selection.offset, 0)))
    return {"format": FINDINGS_FORMAT, "generated": iso(now), "total": total, "findings": [{
        "device": r.device_id, "entry": r.entry, "status": r.status, "app": json.loads(r.app),
        "matched_by": r.matched_by, "first_seen": iso(r.first_seen),
        # A finding is seen whenever its device reports: an unchanged report only moves the device's time.
        "last_seen": iso(r.last_seen if r.resolved_at is not None else max(r.last_seen, r.device_seen)),
        "resolved_at": iso(r.resolved_at),
    } for r in rows]}


def history(connection: Connection, selection: Selection) -> dict[str, Any]:
    """Return the `appban.fleet-history/v1` document: finding events, newest first."""
    e = t.finding_events
    where = []
    if selection.device:
        where.append(e.c.device_id == selection.device)
    if selection.entry:
        where.append(e.c.entry == selection.entry)
    if selection.since is not None:
        where.append(e.c.at >= selection.since)
    rows = connection.execute(select(e).where(*where).order_by(e.c.at.desc(), e.c.id.desc())
                              .limit(_limit(selection)).offset(max(selection.offset, 0)))
    return {"format": HISTORY_FORMAT, "events": [{
        "at": iso(r.at), "device": r.device_id, "entry": r.entry, "event": r.event, "status": r.status,
        "app": r.app_name, "app_key": r.app_key, "report": r.report_id or None,
    } for r in rows]}


def device(connection: Connection, now: float, stale_after: float, device_id: str) -> dict[str, Any] | None:
    """Return one device with its findings (current and resolved) and history, or None if unknown."""
    listed = devices(connection, now, stale_after, Selection(device=device_id))
    if not listed["devices"]:
        return None
    everything = Selection(device=device_id, limit=MAX_LIMIT)
    return {"format": DEVICE_FORMAT, "device": listed["devices"][0],
            "findings": findings(connection, now, everything)["findings"]
            + findings(connection, now, Selection(device=device_id, status="resolved", limit=MAX_LIMIT))["findings"],
            "history": history(connection, everything)["events"],
            "enrollment": [{"event": event, "at": iso(at), "actor": actor}
                           for event, at, actor in enrollment_events(connection, device_id)]}


class BadFilter(ValueError):
    """A filter value that cannot be used; one line naming it."""


def parse_since(text: str, now: float) -> float | None:
    """Given `7d`, `12h` (that long ago) or an ISO 8601 time, return seconds since the epoch
    ("" → None). Raise BadFilter if malformed."""
    from agent.config import interval_seconds
    from agent.schema import SchemaError, parse_timestamp

    if not text:
        return None
    try:
        return now - interval_seconds(text)
    except ValueError:
        pass
    try:
        return parse_timestamp(text).timestamp()
    except (SchemaError, ValueError, TypeError):
        raise BadFilter(f"since {text!r}: expected an age such as 7d or 12h, or an ISO 8601 time") from None


def selection_from(params: dict[str, str], now: float) -> Selection:
    """Build a Selection from query-string or command-line values. Raise BadFilter if malformed."""
    def number(name: str, default: int) -> int:
        value = params.get(name, "")
        if value == "":
            return default
        if not value.isdigit():
            raise BadFilter(f"{name} {value!r}: expected a whole number")
        return int(value)

    def flag(name: str) -> bool:
        return params.get(name, "").lower() in ("1", "true", "yes", "on")

    state = params.get("status", "")
    if state and state not in (*ENTRY_STATUSES, DRIFT, "resolved"):
        raise BadFilter(f"status {state!r}: expected one of {', '.join((*ENTRY_STATUSES, DRIFT, 'resolved'))}")
    return Selection(group=params.get("group", ""), kind=params.get("kind", ""), device=params.get("device", ""),
                     entry=params.get("entry", ""), status=state, since=parse_since(params.get("since", ""), now),
                     noncompliant=flag("noncompliant"), stale=flag("stale"),
                     limit=number("limit", DEFAULT_LIMIT), offset=number("offset", 0))
