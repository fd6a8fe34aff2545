"""Stopping banned processes for real: started from a package's binary, found by the real
collectors, planned and killed through pidfds; a PID that now runs something else is never hit;
the kill-on-launch fallback stops a banned program soon after it starts."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest

from agent.banlist.parse import parse_banlist
from agent.config import parse_config
from agent.enforce.act import enforce
from agent.enforce.deny import DenySet
from agent.enforce.poll import KillOnLaunch
from agent.enforce.processes import KillError, terminate
from agent.inventory.base import Context
from agent.inventory.dpkg import DpkgCollector
from agent.inventory.process import ProcessCollector
from agent.match import compile_banlist, match
from agent.model import Device
from agent.runner import Runner
from enforce_support import banlist_yaml, build_deb, config_yaml, dpkg, installed, make_dpkg_root, need_root, unique

DEVICE = Device(id="test-host")


def wait_gone(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    return proc.wait(timeout=timeout)


@pytest.fixture
def package(tmp_path: Path) -> dict:
    """A banned package installed (real dpkg, throwaway root) whose binaries are a copy of
    `sleep` and a copy of `sh` (to start children)."""
    need_root()
    root = make_dpkg_root(tmp_path / "sys")
    name = unique("appban-test-wps")
    exe, launcher = name.replace("appban-test-", ""), name.replace("appban-test-wps", "wpsl")
    deb = build_deb(tmp_path, name, {exe: Path("/bin/sleep"), launcher: Path("/bin/sh")})
    assert dpkg(root, "-i", str(deb)).returncode == 0
    return {"root": root, "name": name, "exe": root / "usr/bin" / exe, "launcher": root / "usr/bin" / launcher,
            "tmp": tmp_path}


def findings_for(package: dict, names: list[str]):
    """Collect for real (dpkg in the throwaway root, live processes) and match."""
    banlist = parse_banlist(banlist_yaml([
        {"id": "wps-office", "match": {"deb": [package["name"]], "executables": names}}]).encode(), "test list")
    apps = DpkgCollector().collect(Context(root=package["root"], live=False)).apps
    apps += ProcessCollector().collect(Context()).apps
    apps = [replace(a, device=DEVICE.id) for a in apps]
    return match(apps, {DEVICE.id: DEVICE}, compile_banlist(banlist), datetime.now(timezone.utc))


def config_for(package: dict, **enforcement: object):
    text = config_yaml(package["root"], package["tmp"] / "state", kill_grace=2.0, **enforcement)
    return parse_config(text.encode(), "test config")


def test_enforcement_kills_processes_with_children_then_removes_the_package(package: dict) -> None:
    sleeper = subprocess.Popen([str(package["exe"]), "300"])
    parent = subprocess.Popen([str(package["launcher"]), "-c", "sleep 300 & sleep 300 & wait"])
    deadline = time.monotonic() + 10
    while len(children := psutil.Process(parent.pid).children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(children) == 2
    names = [package["exe"].name, package["launcher"].name]
    done = enforce(findings_for(package, names), config_for(package), DEVICE, Runner(), io.StringIO())
    outcomes = {(f.app.source, f.app.extra_value("pid") or f.app.id): f.outcome for f in done.findings}
    assert outcomes == {
        ("process", str(sleeper.pid)): "blocked", ("process", str(parent.pid)): "blocked",
        ("dpkg", package["name"]): "removed",
    }
    assert wait_gone(sleeper) == -15 and wait_gone(parent) == -15
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    assert not installed(package["root"], package["name"])


def test_a_pid_that_now_runs_another_program_is_never_hit(package: dict, tmp_path: Path) -> None:
    other = tmp_path / "innocent"
    shutil.copy("/bin/sleep", other)
    victim = subprocess.Popen([str(other), "300"])
    try:
        time.sleep(0.1)
        with pytest.raises(KillError, match="PID reused, not touched"):
            terminate(victim.pid, str(package["exe"]))
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_init_the_agent_and_its_parent_are_refused() -> None:
    for pid in (1, os.getpid(), os.getppid()):
        with pytest.raises(KillError, match="PID 1|the agent itself"):
            terminate(pid, sys.executable)
    assert psutil.pid_exists(os.getppid())


def test_a_process_matched_without_its_executable_is_never_hit(tmp_path: Path) -> None:
    """A process found by name only (its executable unreadable at scan time) cannot be told
    apart from one that reused its PID since, so it is left alone."""
    other = tmp_path / "innocent"
    shutil.copy("/bin/sleep", other)
    victim = subprocess.Popen([str(other), "300"])
    try:
        with pytest.raises(KillError, match="reused PID"):
            terminate(victim.pid, "")
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_an_exited_process_is_reported_not_guessed() -> None:
    gone = subprocess.Popen(["/bin/true"])
    gone.wait()
    with pytest.raises(KillError, match="has exited"):
        terminate(gone.pid, "/bin/true")


def test_kill_on_launch_stops_a_banned_program_and_leaves_others(tmp_path: Path) -> None:
    need_root()
    banned, fine = tmp_path / unique("wps"), tmp_path / unique("fine")
    for path in (banned, fine):
        shutil.copy("/bin/sleep", path)
    killed = []
    watcher = KillOnLaunch(DenySet(names={banned.name: "wps-office"}), interval=0.1, grace=2.0, on_deny=killed.append)
    watcher.start()
    try:
        survivor = subprocess.Popen([str(fine), "300"])
        started = time.monotonic()
        victim = subprocess.Popen([str(banned), "300"])
        assert wait_gone(victim) == -15
        assert time.monotonic() - started < 5
        assert survivor.poll() is None
    finally:
        watcher.stop()  # joins the watcher, so its report of the kill is in
        survivor.kill()
        survivor.wait()
    assert [(d.path, d.pid, d.entry) for d in killed] == [(str(banned), victim.pid, "wps-office")]


def test_kill_on_launch_catches_a_process_that_execs_after_it_was_seen(tmp_path: Path) -> None:
    """A forked child is seen running its parent's program first; when it later execs the banned
    one it keeps PID and start time, and must still be caught."""
    need_root()
    banned = tmp_path / unique("wps")
    shutil.copy("/bin/sleep", banned)
    watcher = KillOnLaunch(DenySet(names={banned.name: "wps-office"}), interval=0.1, grace=2.0)
    watcher.start()
    try:
        late = subprocess.Popen([sys.executable, "-c",
                                 f"import os, time; time.sleep(1); os.execv({str(banned)!r}, [{str(banned)!r}, '300'])"])
        assert wait_gone(late) == -15
    finally:
        watcher.stop()
    assert watcher.stats["killed"] == 1
