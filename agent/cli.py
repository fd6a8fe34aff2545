"""Command-line entry point: argument parsing and exit codes, nothing else.

Every error a user can cause (a bad config, ban list or inventory file, an unknown source) is
printed as one line on stderr and exits 2, the "no verdict" code; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from agent import __version__
from agent import log
from agent.banlist.parse import BanListError
from agent.commands import check, inventory, policy, quarantine, run, service, status
from agent.commands.check import EnforceUsageError
from agent.config import ConfigError
from agent.enforce.quarantine import QuarantineError
from agent.inventory import UnknownSourceError
from agent.inventory.file import InventoryFileError
from agent.service.settings import ServiceError

COMMANDS = (check, inventory, policy, quarantine, run, status, service)
USER_ERRORS = (
    ConfigError, BanListError, InventoryFileError, UnknownSourceError, EnforceUsageError, QuarantineError,
    ServiceError,
)
EXIT_NO_VERDICT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appban", description="Keep banned apps off government devices.")
    parser.add_argument("--version", action="version", version=f"appban {__version__}")
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="log format on stderr")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v info, -vv debug)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log.configure(args.log_format, ("warning", "info", "debug")[min(args.verbose, 2)])
    try:
        return args.run(args)
    except USER_ERRORS as exc:
        print(f"appban: {exc}", file=sys.stderr)
        return EXIT_NO_VERDICT
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
