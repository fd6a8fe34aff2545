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


@pytest.mark.parametrize(("argv", "suggestion"), [
    (["check", "--enforse"], "unrecognized arguments: --enforse (did you mean '--enforce'?)"),
    (["chek"], "invalid choice: 'chek'"),
    (["inventory", "--fromat", "json"], "(did you mean '--format'?)"),
])
def test_a_misspelt_flag_or_command_suggests_the_nearest(argv: list[str], suggestion: str) -> None:
    done = run_cli(*argv)
    assert done.returncode == 2 and done.stdout == ""
    assert suggestion in done.stderr.splitlines()[-1]
    if argv == ["chek"]:
        assert done.stderr.splitlines()[-1].endswith("(did you mean 'check'?)")


def test_inventory_table_lists_apps_and_counts_processes_apart() -> None:
    done = run_cli("inventory", "--source", "process", "--source", "dpkg", env={"COLUMNS": "100"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["APP", "VERSION", "SOURCE", "USER", "DEVICE"] and len(lines[0]) <= 100
    listed = [line for line in lines[1:] if line.split()[2:3] == ["dpkg"]]
    assert listed, "the installed packages are listed one per line"
    assert any(line.startswith("dpkg ") for line in listed), "dpkg itself is installed here"
    summary = lines[-1]
    assert summary.startswith(f"{len(listed)} app(s) and ") and "running process(es) on 1 device(s)" in summary


def run_on_terminal(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run `python -m agent ARGS` with stderr on a pseudo-terminal (as a person at a shell has it),
    stdout on a pipe; return (exit code, stdout, what the terminal showed)."""
    import os
    import pty
    import subprocess
    import sys

    from tests.conftest import REPO

    master, slave = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "agent", *args], stdout=subprocess.PIPE, stderr=slave,
                              text=True, timeout=timeout, cwd=REPO)
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer has gone
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    return done.returncode, done.stdout, shown.decode(errors="replace").replace("\r\n", "\n")


def test_a_retry_wait_says_what_it_waits_for_on_a_terminal(tmp_path) -> None:
    from tests.banlist_servers import free_port

    url = f"https://127.0.0.1:{free_port()}/banlist.yaml"
    config = tmp_path / "agent.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nbanlist:\n  url: {url}\n  retries: 2\n  backoff: 0.05\n  allow_unsigned: true\n")
    code, stdout, shown = run_on_terminal("check", "--config", str(config), "--source", "process")
    assert code == 2 and stdout == ""
    waits = [line for line in shown.splitlines() if "trying again in" in line]
    assert len(waits) == 2, shown
    assert waits[0].startswith(f"appban: {url}: connection refused (server down?); trying again in ")
    assert waits[0].endswith("(retry 1 of 2)") and waits[1].endswith("(retry 2 of 2)")
    piped = run_cli("check", "--config", str(config), "--source", "process")
    assert "trying again in" not in piped.stderr, "a script reading stderr gets only the one-line error"
