"""What `check` and `inventory` share: config loading, the collection options and gathering an
inventory either from this machine's collectors or from saved inventory files."""

from __future__ import annotations

import argparse
import os
import sys
from agent.clock import datetime
from pathlib import Path

from agent.banlist.keys import load_agent_config
from agent.config import Config
from agent.errors import UserError
from agent.groups import assign_groups
from agent.model import BanList, BanListInfo, Inventory, Report, app_total
from agent.scan import collect_here, report_files, report_here

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Iterable


class CollectionUsageError(UserError):
    """Options that steer collecting on this machine, given with saved inventories instead."""


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="agent config (default /etc/appban/agent.yaml if present)")


def add_state_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", metavar="DIR",
                        help="where the agent keeps its state, e.g. the ban-list cache (default: config state_dir)")


def state_dir_from(args: argparse.Namespace, config: Config) -> Path:
    """Return the state directory: --state-dir if given, else config `state_dir`."""
    return Path(getattr(args, "state_dir", None) or config.state_dir)


def add_collection_args(parser: argparse.ArgumentParser) -> None:
    """Add --source, --root and --inventory."""
    parser.add_argument("--source", action="append", default=[], metavar="NAME",
                        help="only run this collector (repeatable)")
    parser.add_argument("--root", metavar="DIR",
                        help="read the system mounted at DIR instead of the running one (live collectors are skipped)")
    parser.add_argument("--inventory", action="append", default=[], metavar="FILE",
                        help="check a saved inventory instead of collecting (repeatable)")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format")


def config_from(args: argparse.Namespace) -> Config:
    """Load the config named by --config (or the default). Raises ConfigError."""
    return load_agent_config(getattr(args, "config", None))


def gather(args: argparse.Namespace, config: Config, groups: list[str] | None = None) -> Inventory:
    """Return the inventory to check: saved files when --inventory is given, else collected here;
    devices other than this host get their groups from config `gateway` (agent.groups).

    Raises InventoryFileError, UnknownSourceError or CollectionUsageError (one-line user errors).
    """
    if args.inventory:
        _saved_only(args, groups)
        from agent.inventory.file import load_inventory_file, merge_inventories  # the MDM readers: only for saved inventories

        loaded = merge_inventories(load_inventory_file(path) for path in args.inventory)
        return assign_groups(loaded, config.gateway, local=None)
    return collect_here(config, args.root, args.source, groups)


def gather_report(args: argparse.Namespace, config: Config, banlist: BanList, info: BanListInfo,
                  now: datetime) -> Report:
    """Return the Report of what `gather` reads, matched as it is read (agent/scan.py: a
    million-row MDM export or a 20,000-phone MDM is checked without holding every app).

    Raises what `gather` raises."""
    if args.inventory:
        _saved_only(args, args.group)
        return report_files(config, banlist, info, now, args.inventory)
    return report_here(config, banlist, info, now, args.root, args.source, args.group)


def _saved_only(args: argparse.Namespace, groups: list[str] | None) -> None:
    """Refuse collection options given with --inventory: silently checking something else than
    asked would give a misleading verdict. Raise CollectionUsageError naming them."""
    unused = [flag for flag, value in (("--root", args.root), ("--source", args.source), ("--group", groups))
              if value]
    if unused:
        verb = "does" if len(unused) == 1 else "do"
        raise CollectionUsageError(f"{', '.join(unused)} {verb} not apply to saved inventories (--inventory)")


def nothing_read(inventory: Inventory) -> str | None:
    """Given an inventory, return the one line that says why it gives no verdict (every source
    failed and no app was read), or None when it can be judged. The commands print it on stderr
    and exit 2, so a script sees why without parsing the report."""
    if not inventory.errors or app_total(inventory):
        return None
    first = inventory.errors[0]
    more = f" and {len(inventory.errors) - 1} more error(s)" if len(inventory.errors) > 1 else ""
    return f"no verdict: nothing could be read ({first.collector}: {first.message}{more})"


def write_out(text: str | Iterable[str]) -> None:
    """Write `text` (or its pieces, in order) to stdout. A reader that has gone (`| head`,
    `| grep -q`) is not an error: the command's exit code (the verdict, for `check`) must stand,
    not turn into a traceback or 0."""
    try:
        for piece in (text,) if isinstance(text, str) else text:
            sys.stdout.write(piece)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # else Python's flush at exit fails again, with a warning
        os.close(devnull)
