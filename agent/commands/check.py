"""`appban check`: collect (or load) an inventory, match it against the ban list in force, report.

Exit 0 when there is no violation, 1 when there is one, 2 when no verdict could be reached.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from agent.banlist.source import load_fresh
from agent.commands.common import (
    add_collection_args, add_config_arg, add_state_dir_arg, config_from, gather, state_dir_from,
)
from agent.report.build import build_report
from agent.report.render import render_json, render_table

EXIT_COMPLIANT, EXIT_VIOLATION, EXIT_NO_VERDICT = 0, 1, 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="check this machine (or saved inventories) against the ban list")
    add_config_arg(parser)
    add_state_dir_arg(parser)
    parser.add_argument("--banlist", metavar="PATH|URL", help="ban list to use instead of the configured one")
    parser.add_argument("--group", action="append", metavar="G",
                        help="the local device's groups (repeatable; overrides config device.groups)")
    add_collection_args(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the check; user errors propagate to the CLI, which prints one line and exits 2."""
    now = datetime.now(timezone.utc)
    config = config_from(args)
    banlist, info, warning = load_fresh(config, args.banlist, now, state_dir_from(args, config))
    if warning:
        print(f"appban: warning: {warning}", file=sys.stderr)
    inventory = gather(args, config, args.group)
    report = build_report(banlist, info, inventory, now)
    sys.stdout.write(render_json(report) if args.format == "json" else render_table(report))
    if not report.compliant:
        return EXIT_VIOLATION
    if inventory.errors and not inventory.apps:
        return EXIT_NO_VERDICT
    return EXIT_COMPLIANT
