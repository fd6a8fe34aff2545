"""Render a Report as a table for people (80 columns, or the width the command was given) or as
`appban.report/v1` JSON for machines; render an inventory's apps as a table. Pure: the width is
an argument, measured in terminal columns (agent.report.textwidth), so CJK names line up."""

from __future__ import annotations

from itertools import groupby

from agent.model import App, Device, Entry, Finding, Inventory, Report, app_counts, app_total
from agent.printable import printable
from agent.report.textwidth import DEFAULT_WIDTH, fit, wrap

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Iterator, Sequence

Columns = tuple[tuple[str, int], ...]
"""(heading, width) of each column, as laid out for one table width."""
ColumnSpec = tuple[tuple[str, int, bool], ...]
"""(heading, width at 80 columns, whether it stretches with the terminal)."""
_FINDING_COLUMNS: ColumnSpec = (
    ("STATUS", 9, False), ("APP", 22, True), ("SOURCE", 8, False), ("DEVICE", 16, True), ("RULE", 21, True))
_APP_COLUMNS: ColumnSpec = (
    ("APP", 28, True), ("VERSION", 14, True), ("SOURCE", 8, False), ("USER", 8, True), ("DEVICE", 17, True))


def render_json(report: Report) -> str:
    """Return the report as indented JSON (UTF-8 names kept readable)."""
    return "".join(render_json_chunks(report))


def render_json_chunks(report: Report) -> Iterator[str]:
    """Yield render_json's text in pieces (a device or a finding at a time), for writing out a
    fleet's report without holding its whole text. The JSON writer (with the json package, ~5 M
    instructions of a table's start-up) is imported here, for JSON only."""
    from agent.report import jsontext

    yield from jsontext.chunks(report.to_dict())
    yield "\n"


def layout(spec: ColumnSpec, width: int) -> Columns:
    """Given column specs (heading, width at 80 columns, stretches) and the width to fill, return
    the columns: fixed ones keep their width, the others share what is left in proportion."""
    gaps = len(spec) - 1
    fixed = sum(w for _, w, stretch in spec if not stretch)
    flexible = [w for _, w, stretch in spec if stretch]
    room = max(len(flexible) * 4, width - fixed - gaps)
    sizes = [room * w // sum(flexible) for w in flexible]
    sizes[-1] += room - sum(sizes)
    given = iter(sizes)
    return tuple((name, next(given) if stretch else w) for name, w, stretch in spec)


def _row(values: Sequence[str], columns: Columns) -> str:
    return " ".join(fit(v, w) for v, (_, w) in zip(values, columns)).rstrip()


def _detail(finding: Finding) -> str:
    """The line under a row: what softens or delays the finding, what was done, and where the app
    is (the entry's reason is given once, under "rules", not under every finding)."""
    parts: list[str] = []
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


def render_table(report: Report, width: int = DEFAULT_WIDTH) -> str:
    """Return a plain-text table `width` columns wide grouped by device, each rule's reason once,
    then notes, errors and a summary line."""
    info = report.banlist
    header = (f"ban list serial {info.serial} from {info.source}" + ("" if info.signed else " (unsigned)")
              + (f", signed by key {info.signer}" if info.signer else ""))
    lines = wrap(header, width, subsequent="  ")
    if info.stale:
        since = info.stale_since.isoformat() if info.stale_since else "unknown"
        lines += wrap(f"WARNING: the ban list is stale (expired {since}); the central list is not "
                      "being renewed", width, subsequent="  ")
    lines.append(f"{len(report.inventory.devices)} device(s), {app_total(report.inventory)} app(s) checked")
    if report.findings:
        columns = layout(_FINDING_COLUMNS, width)
        lines += ["", _row([name for name, _ in columns], columns)]
        devices = {d.id: d for d in report.inventory.devices}
        apps = app_counts(report.inventory)
        for device, group in groupby(report.findings, key=lambda f: f.device):
            heading = device_heading(devices.get(device) or Device(id=device), apps.get(device, 0))
            lines += wrap(heading, width, subsequent="   ")
            for finding in group:
                app = finding.app
                lines.append(_row((finding.status, app.name or app.id, app.source, device, finding.entry.id), columns))
                lines += wrap(_detail(finding), width, "    ", "    ")
        lines += ["", "rules:"] + [line for entry in _entries(report.findings)
                                   for line in wrap(_rule(entry), width, "  ", "    ")]
    for note in report.inventory.notes:
        lines += wrap(f"note: {note}", width, subsequent="  ")
    for error in report.inventory.errors:
        who = f"{error.collector} ({error.device})" if error.device else error.collector
        lines += wrap(f"error: {who}: {error.message}", width, subsequent="  ")
    lines += ["", _summary(report)]
    return "\n".join(map(printable, lines)) + "\n"


def _entries(findings: Sequence[Finding]) -> list[Entry]:
    """The entries the findings name, each once, in the order they first appear."""
    return list({f.entry.id: f.entry for f in findings}.values())


def _rule(entry: Entry) -> str:
    why = entry.reason or "no reason given in the list"
    refs = f" ({', '.join(entry.references)})" if entry.references else ""
    return f"{entry.id} — {entry.name}: {why}{refs}"


def render_apps(inventory: Inventory, width: int = DEFAULT_WIDTH) -> str:
    """Return the inventory's installed apps as a table `width` columns wide, by device, source
    and name (running processes are what runs, not what is installed: they are counted apart)."""
    columns = layout(_APP_COLUMNS, width)
    apps = sorted((a for a in inventory.apps if a.source != "process"),
                  key=lambda a: (a.device, a.source, (a.name or a.id).casefold(), a.user))
    lines = [_row([name for name, _ in columns], columns)]
    lines += [_row(_app_cells(app), columns) for app in apps]
    return "\n".join(map(printable, lines)) + "\n"


def _app_cells(app: App) -> tuple[str, ...]:
    return (app.name or app.id, app.version, app.source, app.user or "(system)", app.device)


def _summary(report: Report) -> str:
    counts = report.counts()
    text = ", ".join(f"{n} {status}" for status, n in counts.items())
    verdict = "COMPLIANT" if report.compliant else "NOT COMPLIANT"
    if report.inventory.errors and report.compliant:
        verdict = ("NO VERDICT (nothing could be read)" if not app_total(report.inventory)
                   else verdict + " as far as could be read (some sources failed)")
    return f"{verdict}: {text}"
