"""Stopping banned processes for real: started from a package's binary, found by the real
collectors, planned and killed through pidfds; a PID that now runs something else is never hit;
the kill-on-launch fallback stops a banned program soon after it starts."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import textwrap
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
from agent.enforce.processes import Identity, KillError, terminate, unsafe_reason
from agent.inventory.base import Context
from agent.inventory.dpkg import DpkgCollector
from agent.inventory.process import PF_KTHREAD, STAT_FLAGS, ProcessCollector, kernel_thread, stat_fields
from agent.match import compile_banlist, match
from agent.model import Device
from agent.runner import Runner
from enforce_support import banlist_yaml, build_deb, config_yaml, dpkg, installed, make_dpkg_root, need_root, unique

DEVICE = Device(id="test-host")


def wait_gone(proc: subprocess.Popen, timeout: float = 60.0) -> int:
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
    deadline = time.monotonic() + 60
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


def test_kills_count_against_the_cap_and_a_plan_over_it_kills_nothing(tmp_path: Path) -> None:
    """Issue 11: `names: ["*"]` killed 8 of 9 processes because kills were not counted. Four
    banned programs running (two processes each) and their package are five units of the cap
    (a program's processes are one): with the cap at four nothing at all happens (every process
    lives, the package stays); at five all of it does."""
    need_root()
    root = make_dpkg_root(tmp_path / "sys")
    name = unique("appban-test-suite")
    programs = {f"{name.replace('appban-test-', '')}-{i}": Path("/bin/sleep") for i in range(4)}
    assert dpkg(root, "-i", str(build_deb(tmp_path, name, programs))).returncode == 0
    package = {"root": root, "name": name, "tmp": tmp_path}
    running = [subprocess.Popen([str(root / "usr/bin" / exe), "300"]) for exe in programs for _ in range(2)]
    try:
        findings = findings_for(package, list(programs))
        done = enforce(findings, config_for(package, max_actions=4), DEVICE, Runner(), io.StringIO())
        assert done.plan.note.startswith("too many — refused (5 actions: 4 kill, 1 uninstall; max_actions is 4")
        assert {f.outcome for f in done.findings if f.app.source in ("process", "dpkg")} == {f"refused: {done.plan.note}"}
        assert all(p.poll() is None for p in running) and installed(root, name)
        done = enforce(findings, config_for(package, max_actions=5), DEVICE, Runner(), io.StringIO())
        assert all(wait_gone(p) == -15 for p in running) and not installed(root, name)
    finally:
        for proc in running:
            proc.kill()
            proc.wait()


def scanned(pid: int) -> Identity:
    """Return the identity the real process collector records for `pid` (as a scan would)."""
    (app,) = [a for a in ProcessCollector().collect(Context()).apps if a.extra_value("pid") == str(pid)]
    return Identity.of(app)


def test_a_pid_that_now_runs_another_program_is_never_hit(package: dict, tmp_path: Path) -> None:
    other = tmp_path / "innocent"
    shutil.copy("/bin/sleep", other)
    victim = subprocess.Popen([str(other), "300"])
    try:
        seen = scanned(victim.pid)
        with pytest.raises(KillError, match="PID reused, not touched"):
            terminate(replace(seen, exe=str(package["exe"])))
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def reuse_pid(pid: int, argv: list[str], tries: int = 200) -> subprocess.Popen | None:
    """Start `argv` on exactly `pid` (free again), through the kernel's ns_last_pid knob (as
    CRIU does); return None when other processes keep taking the PID first."""
    for _ in range(tries):
        try:
            Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        except OSError as exc:
            pytest.skip(f"cannot steer PID allocation here: {exc}")
        proc = subprocess.Popen(argv)
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
    return None


def test_a_new_process_of_the_same_program_on_a_reused_pid_is_never_hit(package: dict) -> None:
    """Issue 11: the scan saw pid P running the banned program; that process exits, and the same
    program (same executable, same user) is started again and gets P. Only its start time tells
    it apart — and enforcement, working from the scan's record, must leave it alone."""
    first = subprocess.Popen([str(package["exe"]), "300"])
    seen = scanned(first.pid)
    first.kill()
    first.wait()
    # Start times count clock ticks (10 ms at USER_HZ 100). Only ns_last_pid can bring a PID round
    # again within one tick (a real reuse wraps pid_max first), and the scan no longer takes a tick.
    time.sleep(3 / os.sysconf("SC_CLK_TCK"))
    second = reuse_pid(seen.pid, [str(package["exe"]), "300"])
    if second is None:
        pytest.skip("the PID was taken by another process every time")
    try:
        now = scanned(second.pid)
        assert (now.pid, now.exe, now.uid) == (seen.pid, seen.exe, seen.uid) and now.start != seen.start
        with pytest.raises(KillError, match="started at tick .*PID reused, not touched"):
            terminate(seen, grace=1.0)
        assert second.poll() is None
    finally:
        second.kill()
        second.wait()


def test_another_users_process_on_the_pid_is_never_hit() -> None:
    """The scan saw root's process; the PID now holds the same program run by another user."""
    need_root()
    victim = subprocess.Popen(["/bin/sleep", "300"], user=65534)
    try:
        deadline = time.monotonic() + 60
        while psutil.Process(victim.pid).uids().real != 65534 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = scanned(victim.pid)
        assert seen.uid == 65534
        with pytest.raises(KillError, match="runs as uid 65534, not 0: PID reused"):
            terminate(replace(seen, uid=0))
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_init_the_agent_and_its_parent_are_refused() -> None:
    for pid in (1, os.getpid(), os.getppid()):
        with pytest.raises(KillError, match="PID 1|the agent itself"):
            terminate(Identity(pid, sys.executable, "1"))
    assert psutil.pid_exists(os.getppid())


@pytest.mark.parametrize("missing", ["exe", "start"])
def test_a_process_matched_without_its_executable_or_start_time_is_never_hit(tmp_path: Path, missing: str) -> None:
    """A process found by name only (its executable unreadable at scan time), or whose start time
    was not recorded, cannot be told apart from one that reused its PID since: it is left alone."""
    other = tmp_path / "innocent"
    shutil.copy("/bin/sleep", other)
    victim = subprocess.Popen([str(other), "300"])
    try:
        with pytest.raises(KillError, match="reused PID"):
            terminate(replace(scanned(victim.pid), **{missing: ""}))
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_an_exited_process_is_reported_not_guessed() -> None:
    gone = subprocess.Popen(["/bin/sleep", "30"])
    seen = scanned(gone.pid)
    gone.kill()
    gone.wait()
    with pytest.raises(KillError, match="has exited"):
        terminate(seen)


def test_kernel_threads_are_told_by_their_flag_not_their_pid() -> None:
    """PID 2 is kthreadd on a host but an ordinary process inside a container: the PF_KTHREAD
    flag decides. A real kernel thread (a child of kthreadd here) is refused; a process that is
    not one is not called one, whatever its PID."""
    kthreads = [p for p in psutil.pids() if kernel_thread(stat_fields(p))]
    if kthreads:
        assert unsafe_reason(kthreads[-1]) == "kernel thread"
        assert not any(a.extra_value("pid") == str(kthreads[-1]) for a in ProcessCollector().collect(Context()).apps)
    assert not kernel_thread(stat_fields(os.getpid()))
    fields = stat_fields(os.getpid())
    assert kernel_thread([*fields[:STAT_FLAGS], str(int(fields[STAT_FLAGS]) | PF_KTHREAD), *fields[STAT_FLAGS + 1:]])


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


def test_pid_2_inside_a_pid_namespace_is_an_ordinary_process() -> None:
    """In a container (here a real new PID namespace with its own /proc, `unshare --pid
    --mount-proc`), PID 2 is the first child of the container's init, not kthreadd: it is not
    refused as a kernel thread, and the collector lists it."""
    need_root()
    program = textwrap.dedent(f"""
        import subprocess, sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from agent.enforce.processes import unsafe_reason
        from agent.inventory.base import Context
        from agent.inventory.process import ProcessCollector
        child = subprocess.Popen(["/bin/sleep", "30"])
        listed = any(a.extra_value("pid") == "2" for a in ProcessCollector().collect(Context()).apps)
        print(child.pid, repr(unsafe_reason(2)), listed)
        child.kill()
    """)
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", program],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"cannot make a PID namespace here: {done.stderr.strip()}")
    assert done.stdout.split() == ["2", "''", "True"], done.stderr
