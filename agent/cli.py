"""Command-line entry point: argument parsing and exit codes, nothing else.

Every error a user can cause (a bad config, ban list or inventory file, an unknown source) is a
UserError, printed as one line on stderr with exit 2, the "no verdict" code. Any other error is a
bug, and still one line with exit 2: exit 1 means "violation" and nothing else, so a traceback
(which Python ends with status 1) must never reach a script that acts on the verdict. Only the module of the command being run is imported: `appban check` must not pay for
the service, the enforcement engine or the HTTP stack it does not use.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from agent import __version__
from agent import log, terminal
from agent.errors import UserError
from agent.schema import did_you_mean
from agent.printable import printable

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Any, NoReturn, Sequence

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


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout at the width argparse picks (the terminal's columns less two),
    measured by agent.terminal: argparse makes a formatter for every argument added, and its own
    measure imports shutil."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, terminal.columns() - 2 if width is None else width)


class _Parser(argparse.ArgumentParser):
    """argparse, with the nearest valid flag or command suggested for a misspelt one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        super().error(message + _suggestion(self, message))


def _suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    """Given a parser and argparse's error message, return " (did you mean …?)" or ""."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if message.startswith("unrecognized arguments: "):
        unknown = next((w for w in message.split()[2:] if w.startswith("-")), "")
        flags = set(parser._option_string_actions)
        for action in subparsers:
            for child in action.choices.values():
                flags.update(child._option_string_actions)
        return did_you_mean(unknown.split("=")[0], flags) if unknown else ""
    if "invalid choice: " in message and subparsers:
        word = message.split("invalid choice: ", 1)[1].split(" ", 1)[0].strip("'")
        return did_you_mean(word, COMMANDS)
    return ""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Return the parser with every subcommand, or with `only` that one (all are listed for help)."""
    parser = _Parser(prog="appban", description="Keep banned apps off government devices.")
    parser.add_argument("--version", action="version", version=f"appban {__version__}")
    _add_global_flags(parser, default_format="text", default_verbose=0)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).add_parser(subparsers)
    for subparser in subparsers.choices.values():  # `appban check -v` as well as `appban -v check`
        _add_global_flags(subparser, default_format=argparse.SUPPRESS, default_verbose=argparse.SUPPRESS,
                          suffix=AFTER)
    return parser


AFTER = "_after"
"""Dest suffix of the global flags given after the subcommand; argparse copies a subcommand's
values over the top-level ones, so they are kept apart and combined in main()."""


def _add_global_flags(parser: argparse.ArgumentParser, default_format: str, default_verbose: object,
                      suffix: str = "") -> None:
    parser.add_argument("--log-format", choices=("text", "json"), default=default_format,
                        dest="log_format" + suffix, help="log format on stderr")
    parser.add_argument("-v", "--verbose", action="count", default=default_verbose, dest="verbose" + suffix,
                        help="more log output (-v info, -vv debug)")


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line: the first word that is one (options come first)."""
    return next((word for word in argv if word in COMMANDS), None)


def log_settings(args: argparse.Namespace) -> tuple[str, str]:
    """Given parsed arguments, return (log format, level): a format after the subcommand wins,
    `-v` counts before and after it add up."""
    verbose = args.verbose + getattr(args, "verbose" + AFTER, 0)
    return getattr(args, "log_format" + AFTER, args.log_format), ("warning", "info", "debug")[min(verbose, 2)]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_chosen(argv)).parse_args(argv)
    log.configure(*log_settings(args), notices=sys.stderr.isatty())
    try:
        return args.run(args)
    except UserError as exc:
        print(printable(f"appban: {exc}"), file=sys.stderr)
        return EXIT_NO_VERDICT
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - an unexpected error is "no verdict", never 1 ("violation")
        print(printable(f"appban: internal error: {one_line(exc)}"), file=sys.stderr)
        return EXIT_NO_VERDICT


def one_line(exc: BaseException) -> str:
    """Return an exception as one line: its type and message, whitespace collapsed, at most 500
    characters (a RecursionError's message or a parser's can be long)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


if __name__ == "__main__":
    sys.exit(main())
