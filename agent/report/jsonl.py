"""The JSON-lines file sink (config `jsonl:`): one line per finding and one per scan, appended to a
file a SIEM agent (Filebeat, Fluent Bit, rsyslog imfile, the Splunk forwarder) tails, so the SIEM
needs no knowledge of the `appban.report/v1` document.

Every line is one JSON object with an ISO 8601 `time`, an `event` (`appban.finding` or
`appban.scan`), and the report id it belongs to; non-ASCII and control characters are escaped
by the JSON encoder, so a line is always one line. The file is opened for append on every scan,
so logrotate's create or copytruncate both work without a signal.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator

from agent.config import Config
from agent.model import Report
from agent.report.outbox import Outbox

MODE = 0o640


def lines(report: Report) -> Iterator[dict[str, Any]]:
    """Given a report, yield the JSON-lines records for it: each finding, then the scan summary."""
    time = report.generated.isoformat()
    for finding in report.findings:
        app = finding.app
        record: dict[str, Any] = {
            "time": time, "event": "appban.finding", "report": report.id, "device": finding.device,
            "status": finding.status, "entry": finding.entry.id, "action": finding.entry.action,
            "app": app.id, "source": app.source, "name": app.name, "version": app.version,
            "user": app.user, "path": app.path, "matched_by": finding.matched_by,
        }
        if finding.outcome:
            record["outcome"] = finding.outcome
        yield record
    yield {
        "time": time, "event": "appban.scan", "report": report.id, "agent_version": report.agent_version,
        "devices": [d.id for d in report.inventory.devices], "serial": report.banlist.serial,
        "stale": report.banlist.stale, "compliant": report.compliant, "counts": report.counts(),
        "apps": len(report.inventory.apps), "errors": len(report.inventory.errors),
    }


class JsonLinesSink:
    """Appends each report's lines to config `jsonl.path`."""

    name = "jsonl"

    def __init__(self, config: Config, outbox: Outbox) -> None:
        self.path = config.jsonl.path

    @staticmethod
    def wanted(config: Config) -> bool:
        return bool(config.jsonl.path)

    def accept(self, report: Report, document: bytes) -> None:
        """Append the report's lines in one write, so a reader never sees half a scan. Raise OSError."""
        text = "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in lines(report))
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, MODE)
        try:
            os.write(fd, text.encode("ascii"))
        finally:
            os.close(fd)
