"""What the service knows at one moment: the latest report and the facts about its jobs.

The daemon replaces the whole (immutable) snapshot after each job, so the pull endpoint's threads
read a consistent picture without locks, and the same record is written to the state directory
for `appban status`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from agent.inventory.file import inventory_to_dict
from agent.model import Report
from agent.report import jsontext


@dataclass(frozen=True)
class Snapshot:
    """The latest report (with its JSON pre-rendered for the endpoint) and the service's facts.

    Times are seconds since the epoch; None means "not yet".
    """

    report: Report | None = None
    report_json: bytes = b""
    inventory_json: bytes = b""
    banlist_issued: datetime | None = None
    last_scan: float | None = None
    scan_duration: float | None = None
    last_refresh: float | None = None
    refresh_error: str = ""
    queue_depth: int = 0
    dropped: int = 0
    dead_lettered: int = 0

    def facts(self) -> dict[str, Any]:
        """Return the facts `appban status` shows, as a JSON-ready dict (times in ISO 8601)."""
        report = self.report
        return {
            "last_scan": iso_time(self.last_scan), "scan_duration": self.scan_duration,
            "last_refresh": iso_time(self.last_refresh), "refresh_error": self.refresh_error or None,
            "report": report.id if report else None,
            "serial": report.banlist.serial if report else None,
            "stale": report.banlist.stale if report else None,
            "counts": report.counts() if report else None,
            "queue_depth": self.queue_depth, "dropped": self.dropped, "dead_lettered": self.dead_lettered,
        }


def iso_time(stamp: float | None) -> str | None:
    """Given seconds since the epoch (or None), return ISO 8601 UTC to the second (or None)."""
    return None if stamp is None else datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")


def render_documents(report: Report) -> tuple[bytes, bytes]:
    """Return the report's `appban.report/v1` JSON and its `appban.inventory/v1` JSON, as served.

    Both through the standard library's encoder, not msgspec: this is one machine's inventory
    (hundreds to a few thousand apps, milliseconds either way), in the long-lived service,
    where mapping msgspec (and the decimal module it loads) would stay in its idle memory."""
    report_json = jsontext.dumps(report.to_dict()).encode() + b"\n"
    inventory_json = jsontext.dumps(inventory_to_dict(report.inventory)).encode() + b"\n"
    return report_json, inventory_json
