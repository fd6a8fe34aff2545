"""Build a Report from an inventory and the ban list in force: the step `appban check` and the
service's scheduled scan share, so both produce the same `appban.report/v1` document."""

from __future__ import annotations

import uuid
from datetime import datetime

from agent import __version__
from agent.match import compile_banlist, match
from agent.model import BanList, BanListInfo, Inventory, Report


def build_report(banlist: BanList, info: BanListInfo, inventory: Inventory, now: datetime) -> Report:
    """Given the list in force, its info, an inventory and the time, return the Report.

    The report gets a fresh random id, which is what push receivers deduplicate on.
    """
    devices = {d.id: d for d in inventory.devices}
    findings = match(inventory.apps, devices, compile_banlist(banlist), now)
    return Report(
        id=str(uuid.uuid4()), generated=now, agent_version=__version__, banlist=info,
        inventory=inventory, findings=tuple(findings),
    )
