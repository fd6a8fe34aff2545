"""The one scan pipeline: collect on this machine, match against the list in force, enforce.

`appban check` and the service's scheduled scan both run these steps, so a scan produces the same
`appban.report/v1` document and carries out the same plan whichever of them runs it; what stays
with each caller is only what differs (the command's output and exit code; the service's
schedule, its exec guard and its outbox).

The check matches as it reads (`report_here`, `report_files`: agent/tally.py), so an MDM
export of a million rows or an MDM API of 20,000 phones is reported without holding every app
record; the service collects whole (`collect_here`, `build_report`), as its endpoint serves the
inventory. Both give the same report for the same input.
"""

from __future__ import annotations

import dataclasses
from agent.clock import datetime, timedelta
from pathlib import Path

from agent import __version__
from agent.config import Config
from agent.groups import assign_groups
from agent.ids import random_id
from agent.inventory import collect, local_device
from agent.inventory.base import Context
from agent.match import Matcher, compile_banlist, finding_key, match
from agent.model import App, BanList, BanListInfo, Device, Finding, Inventory, Report, staleness
from agent.runner import Runner
from agent.tally import Tally

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Callable, Iterable, Sequence, TextIO


def collect_here(config: Config, root: str | None = None, sources: Sequence[str] = (),
                 groups: Sequence[str] | None = None, stream: Callable[[Iterable[App]], None] | None = None,
                 ) -> Inventory:
    """Run this machine's collectors: `root` and `sources` override config; live collectors run
    only on the running system (no root override and config root "/"); devices other than this
    host get their groups from config `gateway`. With `stream`, the apps of collectors that read
    page by page (the MDM connectors) go to it as each page arrives and are not in the result.

    Raise UnknownSourceError for a source that does not exist.
    """
    chosen = root or config.inventory.root
    ctx = Context(
        root=Path(chosen), live=(root is None and chosen == "/"),
        runner=Runner(commands=config.commands), config=config,
    )
    collected = collect(ctx, sources or config.inventory.sources, groups, stream)
    return assign_groups(collected, config.gateway, local=local_device(ctx).id)


def build_report(banlist: BanList, info: BanListInfo, inventory: Inventory, now: datetime,
                 max_age: timedelta) -> Report:
    """Given the list in force, its info, an inventory, the time and config banlist.max_age,
    return the Report.

    The list's staleness is judged at `now` (a list loaded hours ago may have expired since), and
    the report gets a fresh random id, which is what push receivers deduplicate on.
    """
    devices = {d.id: d for d in inventory.devices}
    findings = match(inventory.apps, devices, compile_banlist(banlist), now)
    return _report(banlist, info, inventory, findings, now, max_age)


def report_here(config: Config, banlist: BanList, info: BanListInfo, now: datetime, root: str | None = None,
                sources: Sequence[str] = (), groups: Sequence[str] | None = None) -> Report:
    """Collect on this machine as `collect_here` and return the Report, matching each MDM
    connector page as it arrives: an enterprise of 20,000 phones is reported without holding its
    million and a half app records (the report lists devices, app counts and findings only)."""
    matcher = Matcher(compile_banlist(banlist), now)
    tally = Tally(matcher.remembered, unique=False)
    inventory = collect_here(config, root, sources, groups, stream=tally.apps)
    tally.apps(inventory.apps)
    return _streamed_report(matcher, tally, dataclasses.replace(inventory, apps=()), banlist, info, now,
                            config.banlist.stale_after())


def report_files(config: Config, banlist: BanList, info: BanListInfo, now: datetime, paths: Sequence[str]) -> Report:
    """Return the Report of saved inventories (appban JSON, MDM exports), each streamed as it is
    read: what `merge_inventories` of the files would give, with devices from config `gateway`
    groups, matched without holding every app record (a 10,000-phone Intune export is a million
    rows). Raise InventoryFileError for an unusable file."""
    from agent.inventory.file import merge_device, stream_inventory_file  # the MDM readers: only for saved files

    matcher = Matcher(compile_banlist(banlist), now)
    tally = Tally(matcher.candidates, unique=True)
    stamps = [stream_inventory_file(path, tally) for path in paths]
    inventory = Inventory(
        devices=tuple(tally.devices(merge_device)), apps=(), errors=tuple(dict.fromkeys(tally.errors)),
        notes=tuple(dict.fromkeys(tally.notes)), collected_at=stamps[0] if len(stamps) == 1 else None,
    )
    inventory = assign_groups(inventory, config.gateway, local=None)
    return _streamed_report(matcher, tally, inventory, banlist, info, now, config.banlist.stale_after())


def _streamed_report(matcher: Matcher, tally: Tally, inventory: Inventory, banlist: BanList, info: BanListInfo,
                     now: datetime, max_age: timedelta) -> Report:
    """Scope the apps the tally kept against the inventory's final devices; return the Report."""
    devices = {d.id: d for d in inventory.devices}
    findings = [
        finding for app, candidates in tally.matched
        for finding in matcher.findings(app, devices.get(app.device) or Device(id=app.device), candidates)
    ]
    findings.sort(key=finding_key)
    counted = dataclasses.replace(inventory, counted=tally.counted())
    return _report(banlist, info, counted, findings, now, max_age)


def _report(banlist: BanList, info: BanListInfo, inventory: Inventory, findings: Sequence[Finding],
            now: datetime, max_age: timedelta) -> Report:
    stale, since = staleness(banlist, now, max_age)
    return Report(
        id=random_id(), generated=now, agent_version=__version__,
        banlist=dataclasses.replace(info, stale=stale, stale_since=since),
        inventory=inventory, findings=tuple(findings),
    )


def enforce_report(
    report: Report, banlist: BanList, config: Config, runner: Runner, out: TextIO, now: datetime,
    dry_run: bool = False,
) -> Report:
    """Plan and carry out blocking for the report's findings — on this host and adb phones, and
    through the MDM for devices read from one (agent/enforce/mdm.py) — under one cap; return the
    report with each finding's outcome. With `dry_run` print the plans on `out` and change nothing.

    The enforcement engine is imported here, not at the top: a plain check never needs it and it
    is a noticeable share of the command's start-up.
    """
    from agent.enforce.mdm import enforce_all

    host = report.inventory.devices[0]
    findings = enforce_all(report, banlist, config, host, runner, out, now, dry_run)
    return dataclasses.replace(report, findings=tuple(findings))
