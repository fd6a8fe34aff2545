"""The fanotify exec guard for real, on a tmpfs mounted for the test (so only execs from that
filesystem ever wait for the guard): a banned program's execve fails with EPERM while an unbanned
one from the same folder runs, stopping the guard restores normal execution, package-owned files,
names and hashes are denied, essential packages' files never are, errors fail open (or closed when
asked), a slow hash never holds an exec past the deadline, and the guard never blocks itself."""

from __future__ import annotations

import errno
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.banlist.parse import parse_banlist
from agent.config import parse_config
from agent.enforce.deny import DenySet
from agent.enforce.execguard import ExecGuard, GuardUnavailable, exec_mounts
from agent.enforce.guard import build_deny
from agent.enforce.guardprocess import GuardProcess
from agent.inventory.base import Context
from agent.inventory.dpkg import DpkgCollector
from agent.match import compile_banlist, match
from agent.model import Device
from enforce_support import banlist_yaml, build_deb, config_yaml, dpkg, make_dpkg_root, need, need_root, unique

TOP = Path(__file__).parents[2]


@pytest.fixture
def mount(tmp_path: Path):
    """A fresh tmpfs: the guard marks only this filesystem."""
    need_root()
    point = tmp_path / "mnt"
    point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "appban-test", str(point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {done.stderr.decode().strip()}")
    yield point
    subprocess.run(["umount", "-l", str(point)], check=True)


def program(folder: Path, name: str, source: str = "/bin/true") -> Path:
    path = folder / name
    shutil.copy(source, path)
    path.chmod(0o755)
    return path


def runs(path: Path) -> bool:
    """Return True when the program starts; False when execve fails with EPERM."""
    try:
        subprocess.run([str(path)], check=True, timeout=30)
        return True
    except PermissionError as exc:
        assert exc.errno == errno.EPERM
        return False


def started(guard):
    try:
        guard.start()
    except GuardUnavailable as exc:
        pytest.skip(f"fanotify unavailable on this machine: {exc}")
    return guard


def test_banned_name_gets_eperm_unbanned_runs_and_stop_restores(mount: Path) -> None:
    banned, fine = program(mount, unique("wps")), program(mount, unique("fine"))
    denied = []
    guard = started(ExecGuard(DenySet(names={banned.name: "wps-office"}), [str(mount)], on_deny=denied.append))
    try:
        assert not runs(banned)
        assert runs(fine)
        assert not runs(banned)  # second time from the cache
    finally:
        guard.stop()
    assert runs(banned)
    assert guard.stats["denied"] == 2 and guard.stats["cached"] >= 1 and guard.stats["errors"] == 0
    assert [(d.path, d.entry) for d in denied] == [(str(banned), "wps-office")] * 2


def test_files_of_a_banned_package_are_denied_essential_ones_never(mount: Path) -> None:
    need("dpkg")
    root = make_dpkg_root(mount / "sys")
    work = mount / "work"
    work.mkdir()
    wps, core = unique("appban-test-wps"), unique("appban-test-core")
    exe, core_exe = wps.replace("appban-test-", "app"), core.replace("appban-test-", "ess")
    for name, programs, essential in ((wps, {exe: Path("/bin/true")}, False), (core, {core_exe: Path("/bin/true")}, True)):
        assert dpkg(root, "-i", str(build_deb(work, name, programs, essential))).returncode == 0
    fine = program(root / "usr/bin", "fine")
    banlist = parse_banlist(banlist_yaml([
        {"id": "wps-office", "match": {"deb": [wps]}},
        {"id": "core-thing", "match": {"executables": [core_exe]}},
    ]).encode(), "list")
    device = Device(id="test-host")
    apps = [replace(a, device=device.id) for a in DpkgCollector().collect(Context(root=root, live=False)).apps]
    now = datetime.now(timezone.utc)
    findings = match(apps, {device.id: device}, compile_banlist(banlist), now)
    config = parse_config(config_yaml(root, mount / "state").encode(), "config")
    deny = build_deny(banlist, findings, config, device, now)
    assert deny.paths == {str(root / "usr/bin" / exe): "wps-office"}
    guard = started(ExecGuard(deny, [str(mount)]))
    try:
        assert not runs(root / "usr/bin" / exe)
        assert runs(root / "usr/bin" / core_exe)  # banned by name, but an essential package owns it
        assert runs(fine)
    finally:
        guard.stop()


def test_sha256_match_whatever_the_name(mount: Path) -> None:
    renamed = program(mount, unique("innocent-looking"))
    digest = hashlib.sha256(renamed.read_bytes()).hexdigest()
    other = program(mount, unique("other"), "/bin/echo")
    # A deadline no loaded machine misses: past it the guard fails open (a test of its own below).
    guard = started(ExecGuard(DenySet(sha256={digest: "wps-office"}), [str(mount)], deadline=30.0))
    try:
        assert not runs(renamed)
        assert runs(other)
    finally:
        guard.stop()


class Broken(DenySet):
    def verdict(self, path, digest):  # type: ignore[override]
        raise RuntimeError("simulated bug")


@pytest.mark.parametrize("fail_closed", [False, True])
def test_internal_error_fails_open_or_closed_as_configured(mount: Path, fail_closed: bool) -> None:
    target = program(mount, unique("any"))
    guard = started(ExecGuard(Broken(names={"x": "y"}), [str(mount)], fail_closed=fail_closed))
    try:
        assert runs(target) is not fail_closed
    finally:
        guard.stop()
    assert guard.stats["errors"] == 1


def test_a_failed_read_does_not_stop_the_guard(mount: Path) -> None:
    """With no file descriptor left, the kernel cannot hand the guard an exec event (read fails
    with EMFILE and the kernel denies that exec); the guard must keep answering afterwards, or
    every later exec on the watched filesystem would wait forever."""
    target = program(mount, unique("any"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    guard = started(ExecGuard(DenySet(names={"x": "y"}), [str(mount)]))
    child = subprocess.Popen(["/bin/sh", "-c", f"read go; exec {target}"], stdin=subprocess.PIPE)
    filler: list[int] = []
    try:
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 16, hard))
        try:
            while True:
                filler.append(os.dup(0))
        except OSError:
            pass
        assert child.stdin is not None
        os.write(child.stdin.fileno(), b"go\n")
        child.wait(timeout=30)
        wait_for(lambda: guard.stats["errors"] >= 1)
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert runs(target)
    finally:
        guard.stop()
        child.kill()


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)


def test_slow_hash_answers_by_the_deadline_and_judges_next_time(mount: Path) -> None:
    big = program(mount, unique("big"))
    with open(big, "ab") as handle:
        handle.write(os.urandom(1 << 20) * 48)
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    guard = started(ExecGuard(DenySet(sha256={digest: "wps-office"}), [str(mount)], deadline=0.0001))
    try:
        assert runs(big)  # fail-open: the verdict was not ready in time
        assert guard.stats["deadline"] == 1
        deadline = time.monotonic() + 60  # hashing 48 MB on a loaded machine can take seconds
        while runs(big):
            assert time.monotonic() < deadline, "background verdict never arrived"
            time.sleep(0.05)
    finally:
        guard.stop()


def test_the_guard_never_blocks_its_own_process(mount: Path) -> None:
    victim = program(mount, unique("victim"), "/bin/echo")
    script = textwrap.dedent(f"""
        import ctypes, subprocess
        from agent.enforce.deny import DenySet
        from agent.enforce.execguard import ExecGuard
        guard = ExecGuard(DenySet(names={{{victim.name!r}: "e"}}), [{str(mount)!r}])
        guard.start()
        try:
            subprocess.run([{str(victim)!r}])
        except PermissionError:
            print("child denied", flush=True)
        # execv through ctypes, which releases the GIL as the guard thread needs to answer
        # (os.execv holds it: see docs/enforcement.md, "Limits")
        libc = ctypes.CDLL(None, use_errno=True)
        argv = (ctypes.c_char_p * 3)({str(victim)!r}.encode(), b"own exec allowed", None)
        libc.execv({str(victim)!r}.encode(), argv)
        print("execv failed", ctypes.get_errno(), flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=TOP, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["child denied", "own exec allowed"], done.stderr


def test_the_service_guard_runs_in_a_worker_and_never_blocks_the_agent(mount: Path, tmp_path: Path) -> None:
    """make_guard's fanotify guard answers from its own process: banned execs fail with EPERM,
    the agent's own os.execv (which holds the GIL) is allowed, and stopping restores execution."""
    victim, fine = program(mount, unique("victim"), "/bin/echo"), program(mount, unique("fine"))
    config = tmp_path / "agent.yaml"
    config.write_text(config_yaml(tmp_path, tmp_path / "state", guard="fanotify", guard_mounts=[str(mount)]))
    script = textwrap.dedent(f"""
        import os, subprocess
        from agent.config import load_config
        from agent.enforce.deny import DenySet
        from agent.enforce.guard import make_guard
        from agent.runner import Runner
        guard = make_guard(load_config({str(config)!r}), DenySet(names={{{victim.name!r}: "e"}}), Runner())
        guard.start()
        try:
            subprocess.run([{str(victim)!r}])
        except PermissionError:
            print("child denied", flush=True)
        subprocess.run([{str(fine)!r}], check=True)
        print("unbanned ran", flush=True)
        guard.update(DenySet(names={{{fine.name!r}: "e"}}))
        try:
            subprocess.run([{str(fine)!r}])
        except PermissionError:
            print("update applied", flush=True)
        os.execv({str(victim)!r}, [{str(victim)!r}, "agent exec allowed"])
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=TOP, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["child denied", "unbanned ran", "update applied", "agent exec allowed"], done.stderr
    assert runs(victim)  # the worker died with its parent's exec: the kernel dropped its group


def test_worker_reports_denials_and_stats_to_the_agent(mount: Path) -> None:
    banned = program(mount, unique("wps"))
    denied = []
    guard = GuardProcess(DenySet(names={banned.name: "wps-office"}), [str(mount)], on_deny=denied.append)
    started(guard)
    try:
        assert not runs(banned)
    finally:
        guard.stop()
    assert runs(banned)
    assert [(d.path, d.entry) for d in denied] == [(str(banned), "wps-office")]
    assert guard.stats["denied"] == 1


def test_a_failing_denial_report_does_not_stop_the_worker_reader(mount: Path) -> None:
    """An on_deny that fails (an unwritable audit log) is logged; later denials are still
    reported and updates still confirmed, since the agent keeps reading the worker."""
    banned = program(mount, unique("wps"))
    denied = []

    def report(denial) -> None:
        denied.append(denial)
        if len(denied) == 1:
            raise OSError("audit log: disk full")

    guard = started(GuardProcess(DenySet(names={banned.name: "wps-office"}), [str(mount)], on_deny=report))
    try:
        assert not runs(banned)
        assert not runs(banned)
        guard.update(DenySet(names={banned.name: "wps-office"}))
    finally:
        guard.stop()
    assert len(denied) == 2


def test_the_guard_watches_real_filesystems_only(mount: Path) -> None:
    points = exec_mounts()
    assert "/" in points and str(mount) in points
    assert "/proc" not in points and "/sys" not in points
