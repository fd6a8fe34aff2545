"""`appban run` with blocking turned on locally: the scan kills a running banned program and
reports it, and the guard (here the kill-on-launch poller, which needs no fanotify) stops one
started later, for as long as the service runs. With `mode: report` the same list blocks nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.service_support import BLOCKING_LIST, Daemon, banned_program, wait_until, write_config


def start(tmp_path: Path, exe: Path, mode: str) -> tuple[Daemon, Path]:
    (tmp_path / "list.yaml").write_text(BLOCKING_LIST.format(exe=exe.name, digests=""))
    state = tmp_path / "state"
    config = write_config(
        tmp_path, banlist={"path": str(tmp_path / "list.yaml")},
        inventory={"root": "/", "sources": ["process"]},
        enforcement={"mode": mode, "guard": "poll", "kill_interval": "0.2s", "kill_grace": 1.0, "notify": False},
    )
    return Daemon(config), state


def report(state: Path) -> dict:
    path = state / "report.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_scan_kills_the_running_app_and_the_guard_stops_a_later_launch(tmp_path: Path) -> None:
    exe = banned_program(tmp_path)
    first = subprocess.Popen([str(exe), "60"])
    daemon, state = start(tmp_path, exe, "block")
    try:
        assert first.wait(timeout=30) != 0, "the scan should have killed the running banned program"
        outcomes = wait_until(lambda: [f.get("outcome") for f in report(state).get("findings", [])
                                       if f["app"]["path"] == str(exe)])
        assert outcomes == ["blocked"]
        wait_until(lambda: daemon.events("guard.started"))
        later = subprocess.Popen([str(exe), "60"])
        assert later.wait(timeout=10) != 0, "the guard should stop a banned program started later"
        # the guard writes its audit line just after the kill: poll, the kill may be seen first
        wait_until(lambda: {"done", "denied-exec"} <= {json.loads(line)["event"] for line in
                                                       (state / "audit.jsonl").read_text().splitlines()})
    finally:
        daemon.stop()
        first.kill()


def test_report_mode_blocks_nothing(tmp_path: Path) -> None:
    exe = banned_program(tmp_path)
    running = subprocess.Popen([str(exe), "60"])
    daemon, state = start(tmp_path, exe, "report")
    try:
        found = wait_until(lambda: [f for f in report(state).get("findings", []) if f["app"]["path"] == str(exe)])
        assert [(f["status"], f.get("outcome")) for f in found] == [("violation", None)]
        assert running.poll() is None
        assert not (state / "audit.jsonl").exists()
    finally:
        running.kill()
        daemon.stop()
