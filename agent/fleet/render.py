"""Table and CSV forms of the fleet documents (status, devices, findings, history).

One pure function per document turns it into (headers, rows); the table and CSV writers share
them, so the CLI's `--format csv` and the web page's downloads are the same file. Table cells have
control characters escaped: device names and app names come from devices and MDM exports.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Callable

from agent.printable import printable

Rows = tuple[list[str], list[list[Any]]]


def status_rows(document: dict[str, Any]) -> Rows:
    headers = ["entry", "violation", "advisory", "upcoming", "exempt"]
    return headers, [[e[h] for h in headers] for e in document["entries"]]


def devices_rows(document: dict[str, Any]) -> Rows:
    headers = ["id", "hostname", "kind", "groups", "compliant", "violations", "stale", "banlist_serial", "last_seen"]
    return headers, [[";".join(d[h]) if h == "groups" else d[h] for h in headers] for d in document["devices"]]


def findings_rows(document: dict[str, Any]) -> Rows:
    headers = ["device", "entry", "status", "app", "first_seen", "last_seen", "resolved_at"]
    return headers, [[f["app"].get("name") or f["app"].get("id") if h == "app" else f[h] for h in headers]
                     for f in document["findings"]]


def history_rows(document: dict[str, Any]) -> Rows:
    headers = ["at", "device", "entry", "event", "status", "app", "report"]
    return headers, [[e[h] for h in headers] for e in document["events"]]


ROWS: dict[str, Callable[[dict[str, Any]], Rows]] = {
    "appban.fleet-status/v1": status_rows, "appban.fleet-devices/v1": devices_rows,
    "appban.fleet-findings/v1": findings_rows, "appban.fleet-history/v1": history_rows,
}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def to_csv(document: dict[str, Any]) -> str:
    """Return the document's rows as CSV (a header row first)."""
    headers, rows = ROWS[document["format"]](document)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([[_cell(v) for v in row] for row in rows])
    return out.getvalue()


def to_table(document: dict[str, Any]) -> str:
    """Return the document as an aligned text table for a terminal (status adds a summary)."""
    headers, rows = ROWS[document["format"]](document)
    cells = [[printable(_cell(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    if document["format"] == "appban.fleet-status/v1":
        d = document["devices"]
        serials = ", ".join(f"{s}: {n}" for s, n in document["banlist_serials"].items()) or "none"
        lines = [f"devices: {d['total']} total, {d['reporting']} reporting, {d['stale']} stale, "
                 f"{d['noncompliant']} non-compliant, {d['drift']} with drift", f"ban-list serials: {serials}",
                 "", *lines]
    elif "total" in document and document["total"] > len(rows):
        lines.append(f"({len(rows)} of {document['total']} shown; use --limit/--offset)")
    return "\n".join(lines) + "\n"
