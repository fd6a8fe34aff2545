"""`appban policy export --to KIND`: the list in force as the file one enforcement engine reads.

The export is pure (agent/export); this module only picks the list (never fetching: the cache,
a file or the bundled list, like `policy show`), writes the file atomically or to stdout, and
prints on stderr what the engine could not express. Exit 0, or 2 with one line on any error.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from agent.atomic import write_atomic
from agent.banlist.source import load_active
from agent.commands.common import add_config_arg, add_state_dir_arg, config_from, state_dir_from, write_out
from agent.errors import UserError
from agent.export import KINDS, renderer
from agent.export.common import Provenance, safe, select

EXIT_OK = 0


class ExportError(UserError):
    """An output file that cannot be written."""


def add_export_parser(actions: argparse._SubParsersAction) -> None:
    export = actions.add_parser("export", help="write the ban list as an enforcement engine's policy file")
    export.add_argument("--to", required=True, choices=KINDS, metavar="KIND", help=f"one of: {', '.join(KINDS)}")
    export.add_argument("--group", action="append", default=[], metavar="G",
                        help="device group the file is for (repeatable; none: devices in no group)")
    export.add_argument("--device", default="", metavar="ID",
                        help="export for this one device, so its individual exceptions apply")
    export.add_argument("--banlist", metavar="PATH|URL", help="ban list to use instead of the one in force")
    export.add_argument("--only-block", action="store_true", help="only entries with action: block")
    export.add_argument("--enforce", action="store_true", help="AppLocker: Enabled instead of AuditOnly")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of stdout")
    add_config_arg(export)
    add_state_dir_arg(export)
    export.set_defaults(run=run_export)


def command_line(args: argparse.Namespace) -> str:
    """Return the command that reproduces this export, for the file's header."""
    words = ["appban", "policy", "export", "--to", args.to]
    for group in args.group:
        words += ["--group", group]
    for flag, value in (("--device", args.device), ("--banlist", args.banlist)):
        if value:
            words += [flag, value]
    words += [flag for flag, on in (("--only-block", args.only_block), ("--enforce", args.enforce)) if on]
    return shlex.join(words)


def run_export(args: argparse.Namespace) -> int:
    config = config_from(args)
    now = datetime.now(timezone.utc)
    banlist, info = load_active(config, args.banlist, now, state_dir_from(args, config))
    provenance = Provenance(serial=banlist.serial, signer=info.signer if info.signed else "", source=info.source,
                            publisher=banlist.publisher, command=command_line(args))
    selection = select(banlist, tuple(args.group), now, provenance, device=args.device,
                       only_block=args.only_block, enforce=args.enforce)
    result = renderer(args.to)(selection)
    if args.output:
        try:
            write_atomic(Path(args.output), result.text.encode("utf-8"), 0o644)
        except OSError as exc:
            raise ExportError(f"output {args.output}: cannot write: {exc.strerror or exc}") from None
    else:
        write_out(result.text)
    for note in (*selection.notes, *result.notes):
        print(f"appban: {args.to} cannot express: {safe(note)}", file=sys.stderr)
    entries = len(selection.entries)
    where = f" to {args.output}" if args.output else ""
    print(f"appban: exported {entries} entr{'y' if entries == 1 else 'ies'} of ban list serial {banlist.serial} "
          f"as {args.to}{where}", file=sys.stderr)
    return EXIT_OK
