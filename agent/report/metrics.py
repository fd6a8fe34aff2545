"""Prometheus metrics rendered from the service's latest snapshot.

As in prometheus_client's own collectors, rendering is a pure function of the data (here the
snapshot and the time) and the collector only calls it on each scrape; the text format is
agent.exposition's (not prometheus_client's: see there why) and the HTTP transport the pull
endpoint's business. Metric names and labels are documented in docs/service.md.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Callable, Iterator

from agent.exposition import Family, counter, gauge
from agent.model import aware
from agent.report.snapshot import Snapshot


def families(snapshot: Snapshot, now: datetime) -> list[Family]:
    """Given a snapshot and the time, return every metric family (report ones only once a scan ran)."""
    queue = gauge("appban_push_queue_depth", "Reports waiting in the push outbox.",
                  value=snapshot.queue_depth)
    dropped = counter("appban_push_dropped", "Reports dropped because the outbox was full.",
                      value=snapshot.dropped)
    dead = counter("appban_push_dead_lettered", "Reports the receiver refused for good (kept aside).",
                   value=snapshot.dead_lettered)
    result: list[Family] = [queue, dropped, dead]
    if snapshot.last_refresh is not None:
        result.append(gauge("appban_banlist_last_refresh_timestamp_seconds",
                            "When the ban list was last refreshed.", value=snapshot.last_refresh))
    if snapshot.report is not None:
        result += _report_families(snapshot, now)
    return result


def _report_families(snapshot: Snapshot, now: datetime) -> list[Family]:
    report = snapshot.report
    assert report is not None
    by_status = gauge("appban_findings_by_status", "Findings per status (zeros included).",
                      labels=["status"])
    for status, count in report.counts().items():
        by_status.add_metric([status], count)
    findings = gauge("appban_findings", "Findings per status and ban-list entry.",
                     labels=["status", "entry"])
    for (status, entry), count in sorted(Counter((f.status, f.entry.id) for f in report.findings).items()):
        findings.add_metric([status, entry], count)
    apps = gauge("appban_apps", "Apps found per inventory source.", labels=["source"])
    for source, count in sorted(Counter(a.source for a in report.inventory.apps).items()):
        apps.add_metric([source], count)
    errors = gauge("appban_collector_errors", "Collector errors in the last scan.",
                   labels=["collector"])
    for collector, count in sorted(Counter(e.collector for e in report.inventory.errors).items()):
        errors.add_metric([collector], count)
    outcomes = gauge("appban_enforcement_outcomes", "Findings per enforcement outcome "
                     "(blocked, removed, quarantined, failed, refused, dry-run) in the last scan.",
                     labels=["outcome"])
    for outcome, count in sorted(Counter(f.outcome.split(":")[0] for f in report.findings if f.outcome).items()):
        outcomes.add_metric([outcome], count)
    info = report.banlist
    result = [
        by_status, findings, apps, errors, outcomes,
        gauge("appban_compliant", "1 when the last scan found no violation.", value=int(report.compliant)),
        gauge("appban_banlist_serial", "Serial of the ban list in force.", value=info.serial),
        gauge("appban_banlist_stale", "1 when the ban list in force is past its expiry.",
              value=int(info.stale)),
        gauge("appban_banlist_signed", "1 when the ban list in force had a verified signature.",
              value=int(info.signed)),
    ]
    if snapshot.banlist_issued is not None:
        age = (aware(now) - aware(snapshot.banlist_issued)).total_seconds()
        result.append(gauge("appban_banlist_age_seconds", "Seconds since the list in force was issued.",
                            value=age))
    if snapshot.last_scan is not None:
        result.append(gauge("appban_last_scan_timestamp_seconds", "When the last scan finished.",
                            value=snapshot.last_scan))
    if snapshot.scan_duration is not None:
        result.append(gauge("appban_last_scan_duration_seconds", "How long the last scan took.",
                            value=snapshot.scan_duration))
    return result


class SnapshotCollector:
    """What the endpoint renders on each scrape (agent.exposition's collector protocol): appban's metrics of
    whatever snapshot `current()` returns, and no process metrics."""

    def __init__(self, current: Callable[[], Snapshot], clock: Callable[[], datetime]) -> None:
        self._current = current
        self._clock = clock

    def collect(self) -> Iterator[Family]:
        yield from families(self._current(), self._clock())
