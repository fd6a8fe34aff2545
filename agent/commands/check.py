"""`appban check`: collect (or load) an inventory, match it against the ban list in force, report.

Exit 0 when there is no violation, 1 when there is one, 2 when no verdict could be reached.
"""

from __future__ import annotations

import argparse
import os
import sys
from agent.clock import datetime, timezone

from agent.errors import UserError
from agent.banlist.source import load_fresh
from agent.commands.common import (
    add_collection_args, add_config_arg, add_state_dir_arg, config_from, gather_report, nothing_read,
    state_dir_from, write_out,
)
from agent.config import Config
from agent.gcpause import one_pass
from agent.model import BanList, Report
from agent.printable import printable
from agent.report.render import render_json_chunks, render_table
from agent.report.textwidth import terminal_width
from agent.scan import enforce_report

EXIT_COMPLIANT, EXIT_VIOLATION, EXIT_NO_VERDICT = 0, 1, 2


class EnforceUsageError(UserError):
    """--enforce asked for something it cannot do (act on saved inventories)."""


def _same_system(read: str, enforced: str) -> None:
    """Refuse to act on one system after reading another (a `--root` image checked with
    --enforce must never have its findings removed from the running machine)."""
    if os.path.realpath(read) != os.path.realpath(enforced):
        raise EnforceUsageError(
            f"--enforce acts on enforcement.root ({enforced}) but the inventory was read from {read}")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="check this machine (or saved inventories) against the ban list")
    add_config_arg(parser)
    add_state_dir_arg(parser)
    parser.add_argument("--banlist", metavar="PATH|URL", help="ban list to use instead of the configured one")
    parser.add_argument("--group", action="append", metavar="G",
                        help="the local device's groups (repeatable; overrides config device.groups)")
    add_collection_args(parser)
    parser.add_argument("--enforce", action="store_true",
                        help="block what the list and local config (enforcement.mode: block) say to block")
    parser.add_argument("--dry-run", action="store_true", help="with --enforce: print the exact plan, change nothing")
    parser.set_defaults(run=run)


def _enforce(
    args: argparse.Namespace, config: Config, banlist: BanList, report: Report, now: datetime,
) -> Report:
    """Plan and carry out blocking on this host (and, where fapolicyd guards, write its rules);
    return the report with the findings' outcomes. The plan goes to stderr under --format json."""
    from agent.enforce.act import write_fapolicyd_rules
    from agent.enforce.network import keep_network_block
    from agent.runner import Runner

    out = sys.stderr if args.format == "json" else sys.stdout
    runner = Runner(commands=config.commands)
    report = enforce_report(report, banlist, config, runner, out, now, args.dry_run)
    write_fapolicyd_rules(banlist, report.findings, config, report.inventory.devices[0], runner, out, now,
                          args.dry_run)
    keep_network_block(banlist, config, report.inventory.devices[0], runner, out, now, report.findings, args.dry_run)
    return report


@one_pass  # the loaded records need no cyclic GC until the command returns (agent/gcpause.py)
def run(args: argparse.Namespace) -> int:
    """Run the check; user errors propagate to the CLI, which prints one line and exits 2."""
    enforcing = args.enforce or args.dry_run
    if enforcing and args.inventory:
        raise EnforceUsageError("--enforce acts on this machine; it cannot be used with --inventory")
    now = datetime.now(timezone.utc)
    config = config_from(args)
    if enforcing:
        _same_system(args.root or config.inventory.root, config.enforcement.root)
        if config.enforcement.mode != "block":  # opt-in is local: say why nothing will happen
            print("appban: --enforce: the local config has enforcement.mode: report, so nothing is blocked "
                  "(set enforcement.mode: block to allow it)", file=sys.stderr)
    banlist, info, warning = load_fresh(config, args.banlist, now, state_dir_from(args, config))
    if warning:
        print(printable(f"appban: warning: {warning}"), file=sys.stderr)
    report = gather_report(args, config, banlist, info, now)
    if enforcing:
        report = _enforce(args, config, banlist, report, now)
    write_out(render_json_chunks(report) if args.format == "json" else render_table(report, terminal_width()))
    if not report.compliant:
        return EXIT_VIOLATION
    reason = nothing_read(report.inventory)
    if reason:
        print(printable(f"appban: {reason}"), file=sys.stderr)
        return EXIT_NO_VERDICT
    return EXIT_COMPLIANT
