"""The service's exec guard across scans and reloads, with the service in this process and real
parts: a real banned process (a copy of `sleep`), the kill-on-launch poller, the fapolicyd rules
writer with `fagenrules` pointed at `true` or `false`."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from agent.enforce.guard import FapolicydRules
from agent.enforce.poll import KillOnLaunch
from agent.service.daemon import Service
from agent.service.settings import load_settings
from agent.service.state import REPORT
from tests.service_support import BLOCKING_LIST, banned_program, write_config

def service(tmp_path: Path, **enforcement: Any) -> tuple[Service, Path]:
    """Return a Service (ban list loaded) blocking a copy of `sleep`, and that copy's path."""
    exe = banned_program(tmp_path)
    (tmp_path / "list.yaml").write_text(BLOCKING_LIST.format(exe=exe.name, digests='"' + "ab" * 32 + '"'))
    config = write_config(
        tmp_path, banlist={"path": str(tmp_path / "list.yaml")},
        inventory={"root": "/", "sources": ["process"]},
        commands={"fagenrules": shutil.which("true")},
        enforcement={"mode": "block", "guard": "poll", "kill_interval": "0.1s", "kill_grace": 1.0,
                     "notify": False, "fapolicyd_rules": str(tmp_path / "15-appban.rules"), **enforcement},
    )
    (tmp_path / "state").mkdir()
    svc = Service(load_settings(str(config), None), lambda: load_settings(str(config), None))
    svc.refresh()
    return svc, exe


def reconfigure(tmp_path: Path, **changes: Any) -> None:
    """Rewrite sections of the config file, as an administrator would before SIGHUP."""
    path = tmp_path / "agent.yaml"
    config = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    path.write_text(yaml.safe_dump(config))


def test_a_dry_run_starts_no_guard_and_stops_nothing(tmp_path: Path) -> None:
    svc, exe = service(tmp_path, dry_run=True)
    banned = subprocess.Popen([str(exe), "60"])
    try:
        svc.scan()
        later = subprocess.Popen([str(exe), "60"])
        time.sleep(1.0)
        assert svc.keeper.guard is None
        assert banned.poll() is None and later.poll() is None, "a dry run must change nothing"
        later.kill()
    finally:
        banned.kill()
        svc._shutdown()


def test_a_guard_that_cannot_start_loses_no_report_and_is_tried_again(tmp_path: Path) -> None:
    svc, _ = service(tmp_path, guard="fapolicyd")
    reconfigure(tmp_path, commands={"fagenrules": shutil.which("false")})
    svc._apply_reload()
    try:
        (svc.settings.state_dir / REPORT).unlink(missing_ok=True)
        svc.scan()
        assert svc.keeper.guard is None
        assert (svc.settings.state_dir / REPORT).exists(), "the scan's report must be kept"
        reconfigure(tmp_path, commands={"fagenrules": shutil.which("true")})
        svc._apply_reload()
        svc.scan()
        assert isinstance(svc.keeper.guard, FapolicydRules)
    finally:
        svc._shutdown()


def test_a_reload_that_changes_the_guard_replaces_or_stops_it(tmp_path: Path) -> None:
    svc, exe = service(tmp_path)
    try:
        svc.scan()
        poller = svc.keeper.guard
        assert isinstance(poller, KillOnLaunch) and poller.running
        reconfigure(tmp_path, enforcement={"guard": "fapolicyd"})
        svc._apply_reload()
        svc.scan()
        assert isinstance(svc.keeper.guard, FapolicydRules)
        assert not poller.running, "the old guard must stop when the config names another"
        reconfigure(tmp_path, enforcement={"guard": "off"})
        svc._apply_reload()
        svc.scan()
        assert svc.keeper.guard is None
        reconfigure(tmp_path, enforcement={"guard": "poll", "dry_run": True})
        svc._apply_reload()
        svc.scan()
        assert svc.keeper.guard is None
    finally:
        svc._shutdown()


def test_turning_blocking_off_withdraws_the_fapolicyd_rules(tmp_path: Path) -> None:
    """fapolicyd keeps its rules after appban's guard stops; once the local config says report,
    the rules appban wrote must go, or fapolicyd would go on blocking for it."""
    svc, _ = service(tmp_path, guard="fapolicyd")
    rules = tmp_path / "15-appban.rules"
    try:
        svc.scan()
        assert "sha256hash=" + "ab" * 32 in rules.read_text()
        reconfigure(tmp_path, enforcement={"mode": "report"})
        svc._apply_reload()
        svc.scan()
        assert svc.keeper.guard is None
        assert "deny" not in rules.read_text()
    finally:
        svc._shutdown()


def test_a_reload_that_turns_blocking_off_stops_the_guard_at_once(tmp_path: Path) -> None:
    """Not at the next scheduled scan, which may be an hour away."""
    svc, exe = service(tmp_path)
    try:
        svc.scan()
        poller = svc.keeper.guard
        assert isinstance(poller, KillOnLaunch) and poller.running
        reconfigure(tmp_path, enforcement={"mode": "report"})
        svc._apply_reload()
        assert svc.keeper.guard is None and not poller.running
        banned = subprocess.Popen([str(exe), "60"])
        time.sleep(0.5)
        assert banned.poll() is None
        banned.kill()
    finally:
        svc._shutdown()
