"""CLI conventions a new administrator expects, with `appban` as a real process: global flags
after the subcommand, timestamped text logs, table output for inventories, suggestions for typos."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest

from agent.cli import build_parser, log_settings
from tests.conftest import run_cli

TEXT_LINE = re.compile(r"^(\S+) (debug|info|warning|error) \S+")


def test_global_flags_work_after_the_subcommand_too() -> None:
    before = run_cli("--log-format", "json", "-v", "inventory", "--source", "process", "--source", "rpm")
    after = run_cli("inventory", "--source", "process", "--source", "rpm", "-v", "--log-format", "json")
    for done in (before, after):
        lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
        assert lines and all(line["level"] in ("info", "warning", "error") for line in lines), done.stderr
    quiet = run_cli("inventory", "--source", "process", "--source", "rpm")
    assert not any(" info " in line for line in quiet.stderr.splitlines())


@pytest.mark.parametrize(("argv", "expected"), [
    (["inventory"], ("text", "warning")),
    (["-v", "inventory", "-v"], ("text", "debug")),
    (["inventory", "-vv", "--log-format", "json"], ("json", "debug")),
    (["--log-format", "json", "inventory", "--log-format", "text"], ("text", "warning")),
])
def test_flags_before_and_after_combine(argv: list[str], expected: tuple[str, str]) -> None:
    assert log_settings(build_parser("inventory").parse_args(argv)) == expected


def test_text_log_lines_start_with_an_iso_8601_time() -> None:
    done = run_cli("inventory", "--source", "rpm", "-v")
    lines = [line for line in done.stderr.splitlines() if TEXT_LINE.match(line)]
    assert lines, done.stderr
    for line in lines:
        stamp = datetime.fromisoformat(line.split()[0])
        assert stamp.tzinfo is not None
