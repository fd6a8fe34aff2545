"""Prometheus metrics of the fleet, with bounded cardinality: no label names a device.

The facts come from the database in a handful of aggregate queries (`metric_facts`); turning them
into metric families is a pure function (`families`). Label values that come from agents (groups,
ban-list serials) are capped: the MAX_VALUES most frequent are kept and the rest summed under
`other`, so an agent with a thousand made-up groups cannot blow up Prometheus.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

from sqlalchemy import Connection, func, select

from agent.exposition import Family, counter, gauge
from agent.fleet import tables as t

MAX_VALUES = 50
OTHER = "other"
KINDS = ("host", "android", "ios", "windows", "macos", "linux", "mdm")
"""Device kinds shown as they are; any other value a device sends is counted as `other`."""


@dataclass
class Counters:
    """In-process ingest counters (per server process; Prometheus sums them across servers)."""

    ingested: Counter[str] = field(default_factory=Counter)
    """Accepted reports by outcome: changed, unchanged, replayed."""
    refused: Counter[str] = field(default_factory=Counter)
    """Refused requests by HTTP status."""
    commits: int = 0
    """Group-commit transactions of pushed reports, and the pushes they held."""
    committed: int = 0
    queued: int = 0
    """Pushes waiting for the group commit now."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, table: str, label: str) -> None:
        with self.lock:
            getattr(self, table)[label] += 1

    def group(self, pushes: int) -> None:
        """Count one group-commit transaction of `pushes` pushes."""
        with self.lock:
            self.commits += 1
            self.committed += pushes


def metric_facts(connection: Connection, now: float, stale_after: float) -> dict[str, Any]:
    """Return the aggregates the metrics show, read in one transaction."""
    d, f, g = t.devices, t.findings, t.device_groups
    cutoff = now - stale_after
    state = (select(d.c.kind, d.c.compliant, (d.c.last_seen < cutoff).label("stale"), func.count())
             .group_by(d.c.kind, d.c.compliant, "stale"))
    current = (f.c.resolved_at.is_(None), f.c.status == "violation")
    return {
        "devices": [tuple(r) for r in connection.execute(state)],
        "by_entry": dict(connection.execute(select(f.c.entry, func.count(func.distinct(f.c.device_id)))
                                            .where(*current).group_by(f.c.entry)).all()),
        "oldest": dict(connection.execute(select(f.c.entry, func.min(f.c.first_seen)).where(*current)
                                          .group_by(f.c.entry)).all()),
        "by_group": dict(connection.execute(select(g.c.group_name, func.count()).join(d, d.c.id == g.c.device_id)
                                            .where(d.c.compliant.is_(False)).group_by(g.c.group_name)).all()),
        "serials": dict(connection.execute(select(d.c.banlist_serial, func.count())
                                           .where(d.c.banlist_serial.is_not(None)).group_by(d.c.banlist_serial)).all()),
        "drift": connection.scalar(select(func.count(func.distinct(f.c.device_id)))
                                   .where(f.c.resolved_at.is_(None), f.c.status == "drift")) or 0,
    }


def capped(counts: dict[Any, int]) -> dict[str, int]:
    """Keep the MAX_VALUES largest label values and add the rest up under `other`."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    kept = {str(k): v for k, v in ranked[:MAX_VALUES]}
    rest = sum(v for _, v in ranked[MAX_VALUES:])
    if rest:
        kept[OTHER] = kept.get(OTHER, 0) + rest
    return kept


def families(facts: dict[str, Any], counters: Counters, now: float, serial: int | None) -> list[Family]:
    """Given the facts, the counters, the time and the fleet's own list serial, return the families."""
    devices = gauge("appban_fleet_devices", "Devices by kind and state (compliant, noncompliant, stale).",
                    labels=["kind", "state"])
    by_state: Counter[tuple[str, str]] = Counter()
    for kind, compliant, stale, count in facts["devices"]:
        kind = kind if kind in KINDS else OTHER
        by_state[(kind, "stale" if stale else "compliant" if compliant else "noncompliant")] += count
    for (kind, state), count in sorted(by_state.items()):
        devices.add_metric([kind, state], count)
    stale = gauge("appban_fleet_stale_devices", "Devices that have not reported within stale_after.",
                  value=sum(c for (_, s), c in by_state.items() if s == "stale"))
    entry = gauge("appban_fleet_noncompliant_devices", "Devices in violation, by ban-list entry.",
                  labels=["entry"])
    for name, count in capped(facts["by_entry"]).items():
        entry.add_metric([name], count)
    oldest = gauge("appban_fleet_oldest_violation_age_seconds",
                   "Age of the oldest current violation, by entry.", labels=["entry"])
    for name, first in sorted(facts["oldest"].items())[:MAX_VALUES]:
        oldest.add_metric([name], max(now - first, 0.0))
    group = gauge("appban_fleet_noncompliant_devices_by_group", "Non-compliant devices, by group.",
                  labels=["group"])
    for name, count in capped(facts["by_group"]).items():
        group.add_metric([name], count)
    serials = gauge("appban_fleet_devices_by_serial", "Agents by the ban-list serial they run.",
                    labels=["serial"])
    for name, count in capped(facts["serials"]).items():
        serials.add_metric([name], count)
    drift = gauge("appban_fleet_drift_devices",
                  "Devices whose agent's list serial, signer or groups differ from the fleet's.",
                  value=facts["drift"])
    fleet_serial = gauge("appban_fleet_banlist_serial", "Serial of the fleet's own ban list.",
                         value=-1 if serial is None else serial)
    ingested = counter("appban_fleet_ingested_reports", "Reports accepted, by outcome.", labels=["outcome"])
    refused = counter("appban_fleet_refused_requests", "Ingest requests refused, by HTTP status.",
                      labels=["status"])
    with counters.lock:
        for outcome in ("changed", "unchanged", "replayed"):
            ingested.add_metric([outcome], counters.ingested[outcome])
        for status, count in sorted(counters.refused.items()):
            refused.add_metric([status], count)
        commits = [counter("appban_fleet_ingest_commits", "Transactions of the push group commit.",
                           value=counters.commits),
                   counter("appban_fleet_ingest_committed_pushes",
                           "Pushes stored by the group commit (divided by the commits: pushes per transaction).",
                           value=counters.committed),
                   gauge("appban_fleet_ingest_queued", "Pushes waiting for the group commit.", value=counters.queued)]
    return [devices, stale, entry, oldest, group, serials, drift, fleet_serial, ingested, refused, *commits]


class FleetCollector:
    """A collector (agent.exposition's protocol) that reads the facts on every scrape."""

    def __init__(self, read: Any) -> None:
        self._read = read

    def collect(self) -> Iterator[Family]:
        yield from self._read()
