"""`appban quarantine list|restore ID`: see what enforcement moved aside, and put it back."""

from __future__ import annotations

import argparse
import sys

from agent.commands.common import add_config_arg, config_from
from agent.enforce.guard import audit_path, quarantine_dir
from agent.enforce.audit import AuditLog
from agent.enforce.quarantine import records, restore
from agent.printable import printable


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("quarantine", help="list or restore quarantined installs")
    actions = parser.add_subparsers(dest="quarantine_action", required=True, metavar="ACTION")
    add_config_arg(actions.add_parser("list", help="list quarantined installs"))
    restore_parser = actions.add_parser("restore", help="move a quarantined install back where it was")
    add_config_arg(restore_parser)
    restore_parser.add_argument("id", help="record id from `appban quarantine list`")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """List records, or restore one (QuarantineError is a one-line user error)."""
    config = config_from(args)
    store = quarantine_dir(config)
    if args.quarantine_action == "list":
        found = records(store)
        for record in found:
            paths = ", ".join(item["original"] for item in record.items)
            sys.stdout.write(printable(f"{record.id}  {record.time[:19]}  entry {record.entry}  {paths}") + "\n")
        if not found:
            sys.stdout.write("quarantine is empty\n")
        return 0
    record = restore(config.enforcement.root, store, args.id)
    AuditLog(audit_path(config)).write("done", action="restore", target=record.id, entry=record.entry,
                                       app=record.app, outcome="restored")
    sys.stdout.write(printable(f"restored {record.id}: {', '.join(i['original'] for i in record.items)}") + "\n")
    return 0
