"""`appban run`: the background service (scheduled refresh, scan and push; the pull endpoint)."""

from __future__ import annotations

import argparse

from agent.commands.common import add_config_arg, add_state_dir_arg
from agent.service.daemon import run_service


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the background service (see docs/service.md)")
    add_config_arg(parser)
    add_state_dir_arg(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return run_service(args.config, args.state_dir)
