"""The platform contract: with fcntl, pwd, grp and termios unimportable (as on Windows) and winreg
absent (as on Linux), every module of the package imports, and check, enforcement planning and
the service (lock, endpoint on a free port, reload on a config change, clean stop on Ctrl+C) run
through the Windows platform module. tests/without_posix.py sets that process up."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import requests
import yaml

from tests.banlist_servers import free_port
from tests.conftest import REPO
from tests.service_support import BANLIST, TOKEN, direct_env, make_tree, wait_until, write_config

PROBE = REPO / "tests" / "without_posix.py"
BLOCKING = BANLIST.replace("    match: {deb: [tiktok-desktop]}", "    action: block\n    match: {deb: [tiktok-desktop]}")
"""The service tests' list, with TikTok's entry set to block (so there is something to plan)."""


def probe(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=direct_env())


def test_every_module_imports_without_the_posix_only_modules() -> None:
    done = probe("import")
    assert done.returncode == 0, done.stderr[-3000:]
    imported = set(done.stdout.split())
    assert {"agent.service.daemon", "agent.service.state", "agent.banlist.cache", "agent.enforce.notify",
            "agent.commands.run", "agent.commands.status", "agent.platform._posix", "agent.platform._windows"} <= imported


def test_check_and_enforcement_planning_run_there(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    banlist = tmp_path / "banlist.yaml"
    banlist.write_text(BLOCKING)
    checked = probe("check", str(root), str(banlist))
    assert checked.returncode == 1, checked.stderr[-3000:]
    report = json.loads(checked.stdout)
    assert [(f["entry"], f["status"]) for f in report["findings"]] == [("tiktok", "violation")]
    planned = probe("plan", str(root), str(banlist))
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert "uninstall dpkg package tiktok-desktop [entry tiktok]" in planned.stdout


def test_the_service_starts_reloads_on_a_config_change_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, server={"listen": f"127.0.0.1:{port}", "token_file": str(tmp_path / "token")})
    state = tmp_path / "state"
    log = (tmp_path / "service.log").open("w")
    service = subprocess.Popen([sys.executable, str(PROBE), "serve", str(config), str(state)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=log, env=direct_env())
    try:
        def health() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(health, timeout=60)

        def report() -> bool:  # 503 until the first scan is done
            return requests.get(f"http://127.0.0.1:{port}/v1/report", headers={"Authorization": f"Bearer {TOKEN}"},
                                timeout=5).status_code == 200

        wait_until(report, timeout=60)
        assert (state / "appban.lock").read_text().strip() == str(service.pid)

        edited = yaml.safe_load(config.read_text())
        edited["schedule"]["scan"] = "2h"
        config.write_text(yaml.safe_dump(edited))
        wait_until(lambda: '"config.reloaded"' in (tmp_path / "service.log").read_text(), timeout=60)

        service.send_signal(signal.SIGINT)  # what WinSW sends on a service stop (Ctrl+C)
        assert service.wait(60) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait(10)
        log.close()
        print((tmp_path / "service.log").read_text())  # pytest shows it when the test failed
    events = [json.loads(line)["event"] for line in (tmp_path / "service.log").read_text().splitlines()
              if line.startswith("{")]
    assert events.index("service.started") < events.index("scan.done") < events.index("config.reloaded")
    assert events[-1] == "service.stopped", events[-5:]
