"""`appban inventory`: list what is installed (a table of apps, then counts per source and per
user), or save it as JSON. Running processes are what runs, not what is installed: they are
counted on their own line, not as apps."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from agent.commands.common import add_collection_args, add_config_arg, config_from, gather, nothing_read, write_out
from agent.gcpause import one_pass, paused_gc
from agent.inventory.file import inventory_to_dict
from agent.model import Inventory
from agent.report import jsontext
from agent.report.render import render_apps
from agent.report.textwidth import terminal_width


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("inventory", help="list installed and running apps")
    add_config_arg(parser)
    add_collection_args(parser)
    parser.set_defaults(run=run)


def render_counts(inventory: Inventory) -> str:
    """Return a table of app counts per device and source, then per user, and any errors."""
    installed = [a for a in inventory.apps if a.source != "process"]
    lines = [f"{'DEVICE':<24} {'SOURCE':<12} {'APPS':>6}"]
    per_source = Counter((a.device, a.source) for a in installed)
    for (device, source), count in sorted(per_source.items()):
        lines.append(f"{device[:24]:<24} {source:<12} {count:>6}")
    per_user = Counter((a.device, a.user or "(system)") for a in installed)
    if per_user:
        lines += ["", f"{'DEVICE':<24} {'USER':<12} {'APPS':>6}"]
        for (device, user), count in sorted(per_user.items()):
            lines.append(f"{device[:24]:<24} {user[:12]:<12} {count:>6}")
    for error in inventory.errors:
        lines.append(f"error: {error.collector}{' (' + error.device + ')' if error.device else ''}: {error.message}")
    processes = len(inventory.apps) - len(installed)
    running = f" and {processes} running process(es)" if processes else ""
    lines.append(f"{len(installed)} app(s){running} on {len(inventory.devices)} device(s)")
    return "\n".join(lines) + "\n"


def write_bytes(document: bytes) -> None:
    """Write a JSON document and a newline to stdout as bytes when stdout has a byte layer (a
    100,000-app inventory is 30 MB: decoding it and encoding it again cost a third of writing it)."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(document.decode() + "\n")
        return
    sys.stdout.flush()
    buffer.write(document)
    buffer.write(b"\n")
    buffer.flush()


@one_pass  # the loaded records need no cyclic GC until the command returns (agent/gcpause.py)
def run(args: argparse.Namespace) -> int:
    with paused_gc():  # each record copied twice (onto its device, into the document): 100,000s of objects, no cycles
        inventory = gather(args, config_from(args))
        if args.format == "json":
            write_bytes(jsontext.encode_document(inventory_to_dict(inventory)))
        else:
            write_out(render_apps(inventory, terminal_width()) + "\n" + render_counts(inventory))
    reason = nothing_read(inventory)
    if reason:
        print(f"appban: {reason}", file=sys.stderr)
        return 2
    return 0
