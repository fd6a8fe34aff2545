"""Prometheus metrics rendered from the service's latest snapshot.

As in prometheus_client's own collectors, rendering is a pure function of the data (here the
snapshot and the time) and the registry only calls it on each scrape; the HTTP transport is the
pull endpoint's business. Metric names and labels are documented in docs/service.md.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from agent.model import aware
from agent.report.snapshot import Snapshot


def families(snapshot: Snapshot, now: datetime) -> list[Metric]:
    """Given a snapshot and the time, return every metric family (report ones only once a scan ran)."""
    queue = GaugeMetricFamily("appban_push_queue_depth", "Reports waiting in the push outbox.",
                              value=snapshot.queue_depth)
    dropped = CounterMetricFamily("appban_push_dropped", "Reports dropped because the outbox was full.",
                                  value=snapshot.dropped)
    result: list[Metric] = [queue, dropped]
    if snapshot.last_refresh is not None:
        result.append(GaugeMetricFamily("appban_banlist_last_refresh_timestamp_seconds",
                                        "When the ban list was last refreshed.", value=snapshot.last_refresh))
    if snapshot.report is not None:
        result += _report_families(snapshot, now)
    return result


def _report_families(snapshot: Snapshot, now: datetime) -> list[Metric]:
    report = snapshot.report
    assert report is not None
    by_status = GaugeMetricFamily("appban_findings_by_status", "Findings per status (zeros included).",
                                  labels=["status"])
    for status, count in report.counts().items():
        by_status.add_metric([status], count)
    findings = GaugeMetricFamily("appban_findings", "Findings per status and ban-list entry.",
                                 labels=["status", "entry"])
    for (status, entry), count in sorted(Counter((f.status, f.entry.id) for f in report.findings).items()):
        findings.add_metric([status, entry], count)
    apps = GaugeMetricFamily("appban_apps", "Apps found per inventory source.", labels=["source"])
    for source, count in sorted(Counter(a.source for a in report.inventory.apps).items()):
        apps.add_metric([source], count)
    errors = GaugeMetricFamily("appban_collector_errors", "Collector errors in the last scan.",
                               labels=["collector"])
    for collector, count in sorted(Counter(e.collector for e in report.inventory.errors).items()):
        errors.add_metric([collector], count)
    outcomes = GaugeMetricFamily("appban_enforcement_outcomes", "Findings per enforcement outcome "
                                 "(blocked, removed, quarantined, failed, refused, dry-run) in the last scan.",
                                 labels=["outcome"])
    for outcome, count in sorted(Counter(f.outcome.split(":")[0] for f in report.findings if f.outcome).items()):
        outcomes.add_metric([outcome], count)
    info = report.banlist
    result = [
        by_status, findings, apps, errors, outcomes,
        GaugeMetricFamily("appban_compliant", "1 when the last scan found no violation.", value=int(report.compliant)),
        GaugeMetricFamily("appban_banlist_serial", "Serial of the ban list in force.", value=info.serial),
        GaugeMetricFamily("appban_banlist_stale", "1 when the ban list in force is past its expiry.",
                          value=int(info.stale)),
        GaugeMetricFamily("appban_banlist_signed", "1 when the ban list in force had a verified signature.",
                          value=int(info.signed)),
    ]
    if snapshot.banlist_issued is not None:
        age = (aware(now) - aware(snapshot.banlist_issued)).total_seconds()
        result.append(GaugeMetricFamily("appban_banlist_age_seconds", "Seconds since the list in force was issued.",
                                        value=age))
    if snapshot.last_scan is not None:
        result.append(GaugeMetricFamily("appban_last_scan_timestamp_seconds", "When the last scan finished.",
                                        value=snapshot.last_scan))
    if snapshot.scan_duration is not None:
        result.append(GaugeMetricFamily("appban_last_scan_duration_seconds", "How long the last scan took.",
                                        value=snapshot.scan_duration))
    return result


class SnapshotCollector:
    """A prometheus_client collector that renders whatever snapshot `current()` returns."""

    def __init__(self, current: Callable[[], Snapshot], clock: Callable[[], datetime]) -> None:
        self._current = current
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from families(self._current(), self._clock())


def make_registry(current: Callable[[], Snapshot], clock: Callable[[], datetime]) -> CollectorRegistry:
    """Return a registry holding only appban's metrics (not the process's default ones)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(current, clock))
    return registry
