"""The process collector reads /proc itself on Linux (agent.inventory.process, issue 14): these
tests hold it to psutil's process_iter on this machine's real processes — as root and as an
unprivileged user who cannot read other users' executables — including a name longer than the
kernel keeps, an executable deleted while it runs, and a zombie."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from agent.inventory.process import _command_line, process_app, proc_processes, psutil_processes, stat_fields, start_ticks

PROBE = """
import json
from agent.inventory.process import process_app, proc_processes, psutil_processes
def apps(listed):
    return {str(info["pid"]): (app.to_dict() if (app := process_app(info, fields)) else None) for info, fields in listed}
ours = apps(proc_processes())
theirs = apps(psutil_processes())
print(json.dumps({"ours": ours, "theirs": theirs}))
"""


REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
"""Debian's, with python3-psutil (what the .deb runs on): the venv's interpreter may live where an
unprivileged user cannot read it (a pyenv build under /root)."""


def _records(user: int | None = None) -> tuple[dict, dict]:
    """Return (ours, psutil's) App records by PID, listed by a child process run as `user` (as
    root with this interpreter and its psutil, as another user with the system's)."""
    python = sys.executable if user is None else SYSTEM_PYTHON
    done = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, check=True, user=user, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    listed = json.loads(done.stdout)
    return listed["ours"], listed["theirs"]


def _unchanged(pid: str, starts: dict[str, str]) -> bool:
    """True when the process `pid` still runs with the start time it had before the listings."""
    return pid in starts and start_ticks(stat_fields(int(pid))) == starts[pid]


@pytest.fixture
def odd_processes():
    """A long-named program, one whose executable is deleted, and a zombie; all run as root,
    from a folder every user may read (so nobody may take argv[0] for the executable)."""
    folder = Path(tempfile.mkdtemp(prefix="appban-proc-"))
    folder.chmod(0o755)
    tag = uuid.uuid4().hex[:8]
    long_name = folder / f"appban-long-named-sleeper-{tag}"
    deleted = folder / f"appban-deleted-{tag}"
    for path in (long_name, deleted):
        shutil.copy("/bin/sleep", path)
    started = [subprocess.Popen([str(long_name), "300"]), subprocess.Popen([str(deleted), "300"]),
               subprocess.Popen([sys.executable, "-c", "import os, time\nif os.fork() == 0:\n    os._exit(0)\n"
                                 "time.sleep(300)"])]
    deadline = time.monotonic() + 60
    while not all(os.path.exists(f"/proc/{p.pid}/exe") for p in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    deleted.unlink()
    zombie_parent = started[2].pid
    while time.monotonic() < deadline and not any(
            stat_fields(int(pid))[:2] == ["Z", str(zombie_parent)] for pid in os.listdir("/proc") if pid.isdigit()):
        time.sleep(0.05)
    yield {"long": (started[0].pid, str(long_name)), "deleted": (started[1].pid, str(deleted)),
           "zombie_parent": zombie_parent}
    for process in started:
        process.kill()
        process.wait()
    shutil.rmtree(folder)


@pytest.mark.parametrize("user", [None, 65534], ids=["root", "nobody"])
def test_the_proc_reader_gives_what_psutil_gives(odd_processes, user: int | None) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to list as root and as nobody")
    if user is not None and subprocess.run([SYSTEM_PYTHON, "-c", "import psutil"], check=False).returncode:
        pytest.skip("the system's python3 has no psutil (python3-psutil, scripts/apt-packages.txt)")
    starts = {str(info["pid"]): start_ticks(fields) for info, fields in proc_processes()}
    ours, theirs = _records(user)
    steady = [pid for pid in set(ours) & set(theirs) if _unchanged(pid, starts)]
    assert len(steady) > 10
    assert {pid: ours[pid] for pid in steady} == {pid: theirs[pid] for pid in steady}
    long_pid, long_path = odd_processes["long"]
    assert ours[str(long_pid)]["name"] == Path(long_path).name  # not the kernel's 15 characters
    assert ours[str(long_pid)]["path"] == long_path  # as nobody: argv[0], an absolute executable path
    deleted_pid, deleted_path = odd_processes["deleted"]
    assert ours[str(deleted_pid)]["path"] == (deleted_path if user is None else "")
    zombies = [pid for pid in steady if ours[pid] and ours[pid]["extra"].get("ppid") == str(odd_processes["zombie_parent"])]
    assert zombies and all(ours[pid]["path"] == "" for pid in zombies)


def test_a_process_that_ends_while_listed_is_left_out(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "7").mkdir(parents=True)  # a folder without its files: the process has ended
    (proc / "self").mkdir()
    live = proc / "9"
    live.mkdir()
    (live / "stat").write_bytes(b"9 (sh) S 1 9 9 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 4242 0 0\n")
    (live / "status").write_bytes(b"Name:\tsh\nUid:\t1000\t1000\t1000\t1000\n")
    (live / "cmdline").write_bytes(b"sh\x00")
    listed = proc_processes(str(proc))
    assert [info["pid"] for info, _ in listed] == [9]
    info, fields = listed[0]
    assert (info["name"], info["ppid"], info["uid"], info["exe"]) == ("sh", 1, 1000, "")
    assert start_ticks(fields) == "4242"


def test_a_kernel_thread_is_left_out_by_its_stat_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel thread (PF_KTHREAD in stat's flags) makes no App, so neither its status nor its
    cmdline is read (most of a machine's processes are such)."""
    from agent.inventory import process

    proc = tmp_path / "proc"
    for pid, name, flags in ((2, "kthreadd", 2129984), (9, "sh", 4194560)):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "stat").write_bytes(f"{pid} ({name}) S 1 9 9 0 -1 {flags} 0 0 0 0 0 0 0 0 20 0 1 0 4242 0 0\n".encode())
        (proc / str(pid) / "status").write_bytes(b"Name:\tx\nUid:\t0\t0\t0\t0\n")
        (proc / str(pid) / "cmdline").write_bytes(b"")
    read: list[str] = []
    real = process._read
    monkeypatch.setattr(process, "_read", lambda path: read.append(path) or real(path))
    assert [info["pid"] for info, _ in proc_processes(str(proc))] == [9]
    assert not [path for path in read if "/2/" in path and not path.endswith("/stat")]


def test_psutil_remains_the_reader_elsewhere() -> None:
    """On systems without /proc the collector lists through psutil: the same records here."""
    mine = {info["pid"]: info for info, _ in psutil_processes()}
    assert os.getpid() in mine and mine[os.getpid()]["uid"] == os.getuid()
    assert process_app(mine[os.getpid()], stat_fields(os.getpid())).path == os.path.realpath(sys.executable)


def _text_mode_arguments(path: Path) -> list[str]:
    """The arguments as the reader took them from a text-mode read of `cmdline` (psutil's way)."""
    data = path.read_text(encoding=sys.getfilesystemencoding(), errors=sys.getfilesystemencodeerrors())
    if not data:
        return []
    separator = "\x00" if data.endswith("\x00") else " "
    arguments = (data[:-1] if data.endswith(separator) else data).split(separator)
    if separator == "\x00" and len(arguments) == 1 and " " in arguments[0]:
        arguments = arguments[0].split(" ")
    return arguments


@pytest.mark.parametrize("cmdline", [
    b"/opt/very-long-program-name/bin/very-long-program-name\x00--flag\x00",
    b"/opt/very-long-program-name-x --title rewritten with spaces",
    b"/opt/very-long-program-name-\xff\xfe\x00a\rb\r\nc\x00",
    b"/opt/very-long-program-name-" + b"y" * 200_000 + b"\x00",
    b"\r\n\r",
    b"",
])
def test_the_command_line_is_what_a_text_mode_read_gives(tmp_path: Path, cmdline: bytes) -> None:
    """`cmdline` is read with descriptor calls, not a text-mode file: the arguments must be what
    the text-mode read (psutil's) gave — bad bytes escaped, CR and CRLF as newlines, any length."""
    (tmp_path / "cmdline").write_bytes(cmdline)
    assert _command_line(str(tmp_path)) == _text_mode_arguments(tmp_path / "cmdline")
