"""The fanotify exec guard for real, on a tmpfs mounted for the test (so only execs from that
filesystem ever wait for the guard): a banned program's execve fails with EPERM while an unbanned
one from the same folder runs, stopping the guard restores normal execution, package-owned files,
names and hashes are denied, essential packages' files never are, errors fail open (or closed when
asked), a slow hash never holds an exec past the deadline, and the guard never blocks itself."""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.banlist.parse import parse_banlist
from agent.config import parse_config
from agent.enforce.deny import SETTLE_NS, DenySet
from agent.enforce.execguard import ExecGuard, GuardUnavailable, exec_mounts
from agent.enforce.guard import build_deny
from agent.enforce.guardprocess import GuardProcess
from agent.enforce.ignoremarks import FLAG_CHOICES
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
    """Copy `source` to `folder/name`, executable, and wait until its verdict may be cached
    (deny.SETTLE_NS: a file changed within a clock tick is judged afresh at every exec)."""
    path = folder / name
    shutil.copy(source, path)
    path.chmod(0o755)
    time.sleep(SETTLE_NS / 1e9)
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
    def judge(self, path, digest, vouch=True):  # type: ignore[override]
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
        from agent.enforce.deny import SETTLE_NS, DenySet
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
        from agent.enforce.deny import SETTLE_NS, DenySet
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


# Ignore marks: an allow left in the kernel (agent/enforce/ignoremarks.py). What the kernel holds
# is read back from /proc/PID/fdinfo of the fanotify group, one line per mark.

def kernel_marks(pid: int, kind: str) -> list[str]:
    """The fanotify marks process `pid` holds: kind "ino" for inode (ignore) marks, "sdev" for
    filesystem marks (the lines that start with it; inode lines also carry an sdev field)."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            lines = Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
        except OSError:
            continue
        found += [line for line in lines if line.startswith(f"fanotify {kind}:")]
    return found


def ignore_marks(pid: int = os.getpid()) -> list[int]:
    """The inode numbers that `pid`'s fanotify groups ignore exec-permission events for."""
    marks = []
    for line in kernel_marks(pid, "ino"):
        fields = dict(part.split(":", 1) for part in line.split()[1:])
        if int(fields["ignored_mask"], 16) & 0x40000:
            marks.append(int(fields["ino"], 16))
    return marks


def answered(guard) -> int:
    return guard.stats["allowed"] + guard.stats["denied"]


@pytest.mark.parametrize("flags", FLAG_CHOICES, ids=["ignore+evictable", "ignored-mask+evictable", "ignored-mask"])
def test_an_allowed_file_once_marked_no_longer_reaches_the_guard(mount: Path, flags: int) -> None:
    """With each way of marking the guard falls back to on older kernels (6.0, 5.19, any)."""
    fine = program(mount, unique("fine"))
    guard = started(ExecGuard(DenySet(names={"wps": "wps-office"}, sha256={"0" * 64: "e"}), [str(mount)]))
    assert guard._marks is not None
    guard._marks._choices = (flags,)
    try:
        assert runs(fine)
        wait_for(lambda: guard.stats["marked"] == 1)  # marked after the answer, off the exec's path
        assert ignore_marks() == [fine.stat().st_ino]
        seen = answered(guard)
        for _ in range(5):
            assert runs(fine)
        assert answered(guard) == seen == 1
    finally:
        guard.stop()


@pytest.mark.parametrize("flags", FLAG_CHOICES, ids=["ignore+evictable", "ignored-mask+evictable", "ignored-mask"])
def test_writing_to_a_marked_file_makes_the_guard_judge_it_again(mount: Path, flags: int) -> None:
    """A write clears the ignore mark (no FAN_MARK_IGNORED_SURV_MODIFY): the same inode, given
    banned bytes in place, is denied at its next exec."""
    target = program(mount, unique("tool"))
    banned = Path("/bin/echo").read_bytes()
    guard = started(ExecGuard(DenySet(sha256={hashlib.sha256(banned).hexdigest(): "wps-office"}), [str(mount)],
                              deadline=30.0))
    assert guard._marks is not None
    guard._marks._choices = (flags,)
    try:
        assert runs(target)
        wait_for(lambda: guard.stats["marked"] == 1)
        inode = target.stat().st_ino
        with open(target, "r+b") as handle:
            handle.write(banned)
            handle.truncate()
        assert target.stat().st_ino == inode and ignore_marks() == []
        assert not runs(target)
        wait_for(lambda: guard.stats["denied"] == 1)
    finally:
        guard.stop()


def test_a_new_deny_set_bans_an_already_marked_file_and_keeps_watching(mount: Path) -> None:
    """update() drops the inode marks before it returns; the filesystem mark stays, so execs
    are still seen (a banned file is still denied)."""
    target, other = program(mount, unique("tool")), program(mount, unique("other"))
    guard = started(ExecGuard(DenySet(names={"wps": "wps-office"}), [str(mount)]))
    try:
        assert runs(target) and runs(other)
        wait_for(lambda: guard.stats["marked"] == 2)
        filesystem_marks = kernel_marks(os.getpid(), "sdev")
        guard.update(DenySet(names={target.name: "wps-office"}))
        assert ignore_marks() == [] and kernel_marks(os.getpid(), "sdev") == filesystem_marks != []
        assert not runs(target)
        assert runs(other)
    finally:
        guard.stop()


def test_the_worker_drops_its_marks_before_confirming_a_new_deny_set(mount: Path) -> None:
    target = program(mount, unique("tool"))
    guard = started(GuardProcess(DenySet(names={"wps": "wps-office"}), [str(mount)]))
    try:
        assert guard._worker is not None
        worker = guard._worker.pid
        assert runs(target)
        wait_for(lambda: ignore_marks(worker) == [target.stat().st_ino])
        guard.update(DenySet(names={target.name: "wps-office"}))
        assert ignore_marks(worker) == []
        assert not runs(target)
    finally:
        guard.stop()


def test_the_mark_cap_holds_and_flushing_keeps_the_guard_working(mount: Path) -> None:
    programs = [program(mount, unique(f"tool{i}")) for i in range(6)]
    banned = program(mount, unique("wps"))
    guard = started(ExecGuard(DenySet(names={banned.name: "wps-office"}), [str(mount)], mark_limit=2))
    try:
        for number, path in enumerate(programs * 2, start=1):
            assert runs(path)
            wait_for(lambda: guard.stats["allowed"] >= number and len(ignore_marks()) >= 1)
            assert len(ignore_marks()) <= 2
        assert guard.stats["marked"] >= len(programs)  # each got a mark once; the flushes dropped some
        assert not runs(banned)
    finally:
        guard.stop()


def test_what_only_the_guard_may_judge_is_never_marked(mount: Path) -> None:
    """Denied files, files someone other than root could rewrite (owned by a user, writable by
    group or others) or rename (in a user's folder), files with a second name, and an exempt
    file whose bytes are banned: each exec of them still reaches the guard."""
    denied = program(mount, unique("wps"))
    users = program(mount, unique("users"))
    os.chown(users, 65534, 65534)
    writable = program(mount, unique("writable"))
    writable.chmod(0o775)
    linked = program(mount, unique("linked"))
    os.link(linked, mount / unique("second-name"))
    theirs = mount / "users-folder"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    renamable = program(theirs, unique("renamable"))  # root's file, but the user may rename it
    keep = mount / "protected"
    keep.mkdir()
    exempt = program(keep, unique("exempt"), "/bin/echo")
    deny = DenySet(names={denied.name: "wps-office"}, protected=(str(keep),),
                   sha256={hashlib.sha256(exempt.read_bytes()).hexdigest(): "wps-office"})
    guard = started(ExecGuard(deny, [str(mount)], deadline=30.0))
    try:
        for _ in range(2):
            assert not runs(denied)
            for path in (users, writable, linked, renamable, exempt):
                assert runs(path)
        wait_for(lambda: guard.stats["denied"] == 2 and guard.stats["allowed"] == 10)
        assert guard.stats["marked"] == 0 and ignore_marks() == []
    finally:
        guard.stop()


def test_own_and_fail_open_answers_are_never_marked(mount: Path) -> None:
    """The guard's own exec of a banned file is allowed but leaves no mark, so another process
    is still denied; an allow given because the deadline passed leaves none either (the next
    exec, once the verdict is made, may)."""
    banned = program(mount, unique("wps"))
    child = subprocess.Popen(["/bin/sh", "-c", f"read go; exec {banned}"], stdin=subprocess.PIPE)
    big = program(mount, unique("big"))
    with open(big, "ab") as handle:
        handle.write(os.urandom(1 << 20) * 32)
    deny = DenySet(names={banned.name: "wps-office"}, sha256={"0" * 64: "other"})
    guard = started(ExecGuard(deny, [str(mount)], deadline=0.0001, allow_pids=frozenset({child.pid})))
    try:
        assert child.stdin is not None
        os.write(child.stdin.fileno(), b"go\n")
        assert child.wait(timeout=30) == 0
        assert guard.stats["self"] == 1 and ignore_marks() == []
        assert not runs(banned)
        assert runs(big) and guard.stats["deadline"] == 1
        assert guard.stats["marked"] == 0 and ignore_marks() == []
        wait_for(lambda: runs(big) and guard.stats["marked"] == 1)  # the background verdict
    finally:
        guard.stop()
        child.kill()


def test_a_verdict_made_under_the_old_deny_set_is_never_marked_under_the_new(mount: Path) -> None:
    """The race update() closes: an allow decided just before a new set came in force must not
    reach the kernel after the flush."""
    target = program(mount, unique("tool"))
    guard = started(ExecGuard(DenySet(names={"wps": "wps-office"}), [str(mount)]))
    fd = os.open(target, os.O_RDONLY)
    try:
        assert guard._marks is not None
        before = guard._marks.generation
        guard.update(DenySet(names={target.name: "wps-office"}))
        assert not guard._marks.add(fd, before, lambda: True) and ignore_marks() == []
        assert guard._marks.add(fd, guard._marks.generation, lambda: True)
        assert ignore_marks() == [target.stat().st_ino]
        assert not guard._marks.add(fd, guard._marks.generation, lambda: False)  # changed while judged
        assert ignore_marks() == []
    finally:
        os.close(fd)
        guard.stop()


def test_a_banned_package_file_is_denied_by_any_path_that_reaches_it(mount: Path) -> None:
    """Verdicts (cached and kept in the kernel) are per inode, so a package's file is denied by
    its inode too: through a bind mount or a hard link under an unbanned name, and first."""
    packaged = program(mount, unique("wps-bin"))
    alias, linked = mount / unique("alias"), mount / unique("linked")
    alias.touch()
    subprocess.run(["mount", "--bind", str(packaged), str(alias)], check=True)
    try:
        os.link(packaged, linked)
        guard = started(ExecGuard(DenySet(paths={str(packaged): "wps-office"}), [str(mount)]))
        try:
            assert not runs(alias)
            assert not runs(linked)
            assert not runs(packaged)
        finally:
            guard.stop()
        assert runs(alias)
    finally:
        subprocess.run(["umount", str(alias)], check=True)


def test_an_update_the_worker_cannot_confirm_raises_so_the_keeper_restarts_the_guard(mount: Path) -> None:
    """A worker that dies after taking an update (here: stopped, sent it, then killed) makes
    update() raise at once with why, rather than after its confirmation timeout."""
    guard = started(GuardProcess(DenySet(names={"wps": "wps-office"}), [str(mount)]))
    errors: list[Exception] = []

    def update() -> None:
        try:
            guard.update(DenySet(names={"other": "wps-office"}))
        except GuardUnavailable as exc:
            errors.append(exc)

    sent = threading.Event()
    send = guard._send

    def send_and_tell(message) -> None:
        send(message)
        sent.set()

    guard._send = send_and_tell  # type: ignore[method-assign]
    try:
        assert guard._worker is not None
        os.kill(guard._worker.pid, signal.SIGSTOP)
        waiting = threading.Thread(target=update)
        waiting.start()
        assert sent.wait(timeout=25)
        guard._worker.kill()
        waiting.join(timeout=25)  # under GuardProcess's own 30 s confirmation timeout
        assert not waiting.is_alive() and "worker exited" in str(errors[0])
    finally:
        guard.stop()


# The verdict cache of files the kernel may not keep (a user's own programs): every exec of them
# reaches the guard and is answered from its cache, keyed by the file's (device, inode, ctime,
# size) and its path. Each test makes a change that keeps what the old key (the mtime) saw, or
# reaches the same inode by another path, and the next exec must be judged by what it is now.

def users_program(folder: Path, name: str, body: bytes) -> Path:
    """A program of `body`'s bytes owned by a user (nobody), so never marked, settled so that
    its verdict is cached (deny.SETTLE_NS)."""
    path = folder / name
    path.write_bytes(body)
    path.chmod(0o755)
    os.chown(path, 65534, 65534)
    time.sleep(SETTLE_NS / 1e9)
    return path


def same_size(*sources: str) -> list[bytes]:
    """The programs' bytes, zero-padded to one size (an ELF file runs with trailing zeros)."""
    bodies = [Path(source).read_bytes() for source in sources]
    size = max(map(len, bodies))
    return [body.ljust(size, b"\0") for body in bodies]


def cached_allow(mount: Path) -> tuple[Path, bytes, ExecGuard]:
    """A user's program, allowed and then answered from the cache by a started guard that bans
    other bytes of the same size (returned) by hash."""
    clean, banned = same_size("/bin/true", "/bin/echo")
    target = users_program(mount, unique("tool"), clean)
    guard = started(ExecGuard(DenySet(sha256={hashlib.sha256(banned).hexdigest(): "wps-office"}), [str(mount)],
                              deadline=30.0))
    try:
        assert runs(target) and runs(target)
        assert guard.stats["cached"] == 1
    except BaseException:
        guard.stop()
        raise
    return target, banned, guard


def test_banned_bytes_written_with_the_mtime_set_back_are_denied(mount: Path) -> None:
    """Same inode, size and mtime (utimensat sets it back), new bytes: the ctime tells."""
    target, banned, guard = cached_allow(mount)
    try:
        before = target.stat()
        with open(target, "r+b") as handle:
            handle.write(banned)
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        time.sleep(SETTLE_NS / 1e9)
        after = target.stat()
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
        assert not runs(target)
        assert guard.stats["marked"] == 0
    finally:
        guard.stop()


def test_banned_bytes_written_through_mmap_are_denied(mount: Path) -> None:
    """An mmap write sends no modify event (which is why a user's file is never left to an
    ignore mark: the kernel would keep allowing it), but it does change the ctime."""
    target, banned, guard = cached_allow(mount)
    try:
        fd = os.open(target, os.O_RDWR)
        try:
            with mmap.mmap(fd, len(banned)) as mapped:
                mapped[:] = banned
        finally:
            os.close(fd)
        time.sleep(SETTLE_NS / 1e9)
        assert not runs(target)
        assert guard.stats["marked"] == 0 and ignore_marks() == []
    finally:
        guard.stop()


@pytest.mark.parametrize("when", ["before the first exec", "after an allow"])
def test_a_hard_link_under_a_banned_name_is_denied(mount: Path, when: str) -> None:
    """One inode, two names, one banned: the cached allow of the other name is not reused."""
    clean, = same_size("/bin/true")
    fine = users_program(mount, unique("fine"), clean)
    banned = mount / unique("wps")
    guard = started(ExecGuard(DenySet(names={banned.name: "wps-office"}), [str(mount)]))
    try:
        if when == "before the first exec":
            os.link(fine, banned)
            time.sleep(SETTLE_NS / 1e9)
        assert runs(fine) and runs(fine)
        if when == "after an allow":
            os.link(fine, banned)
            time.sleep(SETTLE_NS / 1e9)
        assert not runs(banned)
        assert runs(fine)
    finally:
        guard.stop()


def test_a_file_renamed_to_a_banned_name_or_chmoded_is_judged_again(mount: Path) -> None:
    clean, = same_size("/bin/true")
    fine = users_program(mount, unique("fine"), clean)
    banned = mount / unique("wps")
    guard = started(ExecGuard(DenySet(names={banned.name: "wps-office"}), [str(mount)]))
    try:
        assert runs(fine) and runs(fine)
        cached = guard.stats["cached"]
        fine.chmod(0o750)
        time.sleep(SETTLE_NS / 1e9)
        assert runs(fine)
        assert guard.stats["cached"] == cached  # the ctime changed: judged, not looked up
        fine.rename(banned)
        time.sleep(SETTLE_NS / 1e9)
        assert not runs(banned)
    finally:
        guard.stop()


def test_a_folder_renamed_out_of_a_protected_tree_has_its_banned_bytes_denied(mount: Path) -> None:
    """An exempt file is allowed without its hash counting; once its folder (renamed by a user,
    which leaves the file's own ctime alone) is outside the tree, the hash rule applies."""
    clean, banned = same_size("/bin/true", "/bin/echo")
    keep = mount / "protected"
    keep.mkdir()
    target = users_program(keep, unique("tool"), banned)
    guard = started(ExecGuard(DenySet(sha256={hashlib.sha256(banned).hexdigest(): "wps-office"},
                                      protected=(str(keep),)), [str(mount)], deadline=30.0))
    try:
        assert runs(target) and runs(target)
        ctime = target.stat().st_ctime_ns
        moved = keep.rename(mount / "elsewhere")
        assert (moved / target.name).stat().st_ctime_ns == ctime
        assert not runs(moved / target.name)
    finally:
        guard.stop()


def test_a_folder_renamed_out_of_a_protected_tree_has_its_banned_name_denied(mount: Path) -> None:
    """With no hash rules an exempt file's allow holds for its bytes, but not for its name once
    its folder is renamed out of the tree."""
    keep = mount / "protected"
    keep.mkdir()
    clean, = same_size("/bin/true")
    target = users_program(keep, unique("wps"), clean)
    guard = started(ExecGuard(DenySet(names={target.name: "wps-office"}, protected=(str(keep),)), [str(mount)]))
    try:
        assert runs(target) and runs(target)
        assert guard.stats["cached"] == 1
        moved = keep.rename(mount / "elsewhere")
        assert not runs(moved / target.name)
    finally:
        guard.stop()


def test_a_new_deny_set_judges_a_cached_allow_again(mount: Path) -> None:
    clean, = same_size("/bin/true")
    target = users_program(mount, unique("tool"), clean)
    guard = started(ExecGuard(DenySet(names={"wps": "wps-office"}), [str(mount)]))
    try:
        assert runs(target) and runs(target)
        assert guard.stats["cached"] == 1
        guard.update(DenySet(names={target.name: "wps-office"}))
        assert not runs(target)
    finally:
        guard.stop()
