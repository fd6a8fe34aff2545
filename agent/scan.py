"""The one scan pipeline: collect on this machine, match against the list in force, enforce.

`appban check` and the service's scheduled scan both run these steps, so a scan produces the same
`appban.report/v1` document and carries out the same plan whichever of them runs it; what stays
with each caller is only what differs (the command's output and exit code; the service's
schedule, its exec guard and its outbox).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path
from typing import Sequence, TextIO

from agent import __version__
from agent.config import Config
from agent.groups import assign_groups
from agent.ids import random_id
from agent.inventory import collect, local_device
from agent.inventory.base import Context
from agent.match import compile_banlist, match
from agent.model import BanList, BanListInfo, Inventory, Report, staleness
from agent.runner import Runner


def collect_here(config: Config, root: str | None = None, sources: Sequence[str] = (),
                 groups: Sequence[str] | None = None) -> Inventory:
    """Run this machine's collectors: `root` and `sources` override config; live collectors run
    only on the running system (no root override and config root "/"); devices other than this
    host get their groups from config `gateway`.

    Raise UnknownSourceError for a source that does not exist.
    """
    chosen = root or config.inventory.root
    ctx = Context(
        root=Path(chosen), live=(root is None and chosen == "/"),
        runner=Runner(commands=config.commands), config=config,
    )
    collected = collect(ctx, sources or config.inventory.sources, groups)
    return assign_groups(collected, config.gateway, local=local_device(ctx).id)


def build_report(banlist: BanList, info: BanListInfo, inventory: Inventory, now: datetime,
                 max_age: timedelta) -> Report:
    """Given the list in force, its info, an inventory, the time and config banlist.max_age,
    return the Report.

    The list's staleness is judged at `now` (a list loaded hours ago may have expired since), and
    the report gets a fresh random id, which is what push receivers deduplicate on.
    """
    stale, since = staleness(banlist, now, max_age)
    devices = {d.id: d for d in inventory.devices}
    findings = match(inventory.apps, devices, compile_banlist(banlist), now)
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
