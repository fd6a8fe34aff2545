"""Command-line entry point: argument parsing and exit codes, nothing else.

Every error a user can cause (a bad config, ban list or inventory file, an unknown source) is a
UserError, printed as one line on stderr with exit 2, the "no verdict" code; tracebacks are for
bugs only. Only the module of the command being run is imported: `appban check` must not pay for
the service, the enforcement engine or the HTTP stack it does not use.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from agent import __version__
from agent import log
from agent.errors import UserError

COMMANDS = {
    "check": "agent.commands.check",
    "fleet": "agent.commands.fleet",
    "inventory": "agent.commands.inventory",
    "policy": "agent.commands.policy",
    "quarantine": "agent.commands.quarantine",
    "run": "agent.commands.run",
    "status": "agent.commands.status",
    "service": "agent.commands.service",
}
"""Subcommand → the module that adds its parser and runs it."""
EXIT_NO_VERDICT = 2


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Return the parser with every subcommand, or with `only` that one (all are listed for help)."""
    parser = argparse.ArgumentParser(prog="appban", description="Keep banned apps off government devices.")
    parser.add_argument("--version", action="version", version=f"appban {__version__}")
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="log format on stderr")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v info, -vv debug)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).add_parser(subparsers)
    return parser


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line: the first word that is one (options come first)."""
    return next((word for word in argv if word in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_chosen(argv)).parse_args(argv)
    log.configure(args.log_format, ("warning", "info", "debug")[min(args.verbose, 2)])
    try:
        return args.run(args)
    except UserError as exc:
        print(f"appban: {exc}", file=sys.stderr)
        return EXIT_NO_VERDICT
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
