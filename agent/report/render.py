"""Render a Report as an 80-column table for people or as `appban.report/v1` JSON for machines."""

from __future__ import annotations

import textwrap
from itertools import groupby

from agent.model import Device, Finding, Report, app_counts
from agent.report import jsontext

WIDTH = 80
_COLUMNS = (("STATUS", 9), ("APP", 22), ("SOURCE", 8), ("DEVICE", 16), ("RULE", 21))


def render_json(report: Report) -> str:
    """Return the report as indented JSON (UTF-8 names kept readable)."""
    return jsontext.dumps(report.to_dict()) + "\n"


def _cell(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _row(values: tuple[str, ...]) -> str:
    return " ".join(_cell(v, w).ljust(w) for v, (_, w) in zip(values, _COLUMNS)).rstrip()


def _detail(finding: Finding) -> str:
    """The line under a row: why the app is listed, and what softens or delays it."""
    parts = [finding.entry.reason or finding.entry.name]
    if finding.status == "exempt" and finding.exception is not None:
        exc = finding.exception
        parts.append(f"exception approved by {exc.approved_by} until {exc.expires.date().isoformat()}")
    elif finding.status == "exempt":
        parts.append("device group exempt")
    elif finding.status == "upcoming" and finding.entry.effective is not None:
        parts.append(f"effective {finding.entry.effective.isoformat()}")
    if finding.outcome:
        parts.append(f"outcome: {finding.outcome}")
    app = finding.app
    where = " ".join(filter(None, (app.path, f"user {app.user}" if app.user else "",
                                   f"pid {app.extra_value('pid')}" if app.extra_value("pid") else "")))
    if where:
        parts.append(where)
    return " — ".join(parts)


def device_heading(device: Device, apps: int) -> str:
    """Return the line that opens a device's findings: kind, id, serial, model, OS, groups, app count."""
    attributes = dict(device.attributes)
    facts = [device.kind, device.id]
    if device.hostname and device.hostname != device.id:
        facts.append(device.hostname)
    if attributes.get("serial") and attributes["serial"] != device.id:
        facts.append(f"serial {attributes['serial']}")
    model = " ".join(v for v in (attributes.get("manufacturer", ""), attributes.get("model", "")) if v)
    facts += [v for v in (model, device.os) if v]
    facts.append(f"groups: {', '.join(device.groups)}" if device.groups else "no groups")
    facts.append(f"{apps} app(s)")
    return "== " + " · ".join(facts)


def render_table(report: Report) -> str:
    """Return a plain-text table grouped by device, with a summary line and any errors."""
    info = report.banlist
    header = (f"ban list serial {info.serial} from {info.source}" + ("" if info.signed else " (unsigned)")
              + (f", signed by key {info.signer}" if info.signer else ""))
    lines = textwrap.wrap(header, WIDTH, subsequent_indent="  ")
    if info.stale:
        since = info.stale_since.isoformat() if info.stale_since else "unknown"
        lines += textwrap.wrap(f"WARNING: the ban list is stale (expired {since}); the central list is not "
                               "being renewed", WIDTH, subsequent_indent="  ")
    lines.append(f"{len(report.inventory.devices)} device(s), {len(report.inventory.apps)} app(s) checked")
    if report.findings:
        lines += ["", _row(tuple(name for name, _ in _COLUMNS))]
        devices = {d.id: d for d in report.inventory.devices}
        apps = app_counts(report.inventory)
        for device, group in groupby(report.findings, key=lambda f: f.device):
            heading = device_heading(devices.get(device) or Device(id=device), apps.get(device, 0))
            lines += textwrap.wrap(heading, WIDTH, subsequent_indent="   ")
            for finding in group:
                app = finding.app
                lines.append(_row((finding.status, app.name or app.id, app.source, device, finding.entry.id)))
                lines += textwrap.wrap(_detail(finding), WIDTH, initial_indent="    ", subsequent_indent="    ")
    for note in report.inventory.notes:
        lines += textwrap.wrap(f"note: {note}", WIDTH, subsequent_indent="  ")
    for error in report.inventory.errors:
        who = f"{error.collector} ({error.device})" if error.device else error.collector
        lines += textwrap.wrap(f"error: {who}: {error.message}", WIDTH, subsequent_indent="  ")
    lines += ["", _summary(report)]
    return "\n".join(map(printable, lines)) + "\n"


def printable(line: str) -> str:
    """Return `line` with control characters shown as U+FFFD: names, paths and serials come from
    phones, MDM exports and files, and an escape sequence or a line break in one must not
    repaint the terminal or forge a line of the report."""
    return line if line.isprintable() else "".join(c if c.isprintable() else "\ufffd" for c in line)


def _summary(report: Report) -> str:
    counts = report.counts()
    text = ", ".join(f"{n} {status}" for status, n in counts.items())
    verdict = "COMPLIANT" if report.compliant else "NOT COMPLIANT"
    if report.inventory.errors and report.compliant:
        verdict = ("NO VERDICT (nothing could be read)" if not report.inventory.apps
                   else verdict + " as far as could be read (some sources failed)")
    return f"{verdict}: {text}"
