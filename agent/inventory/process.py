"""Running processes: a banned app that is running is found even when no package database
knows it, e.g. a binary copied into a home folder.

Each record keeps what tells this process apart from a later one that reuses its PID: its start
time in clock ticks after boot (`/proc/PID/stat` field 22) and its real uid, read at scan time;
enforcement signals a PID only while both (and the executable) still match.

On Linux the processes are read from /proc here, giving what psutil's process_iter gives for the
fields used (name, parent, executable, real uid and its user name; tests/integration compare the
two on this machine's processes). Why not psutil there: importing it and building a Process per
PID was ~20 ms of a 100 ms `appban check`, and it kept ~2.5 MiB in the idle service. Other
systems have no /proc and use psutil (imported on use).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterator

from agent import platform as host
from agent.inventory.base import Collected, Context
from agent.model import App

PF_KTHREAD = 0x00200000
"""The kernel's flag for its own threads (include/linux/sched.h), field 9 of /proc/PID/stat."""
STAT_FLAGS, STAT_START = 6, 19
"""Indexes of the flags and start-time fields in `stat_fields` (which starts at field 3, the state)."""


def stat_fields(pid: int, proc: str = "/proc") -> list[str]:
    """Return the fields of /proc/PID/stat after the command name (index 0 is the state), or []
    when the process is gone. The name is skipped by its last `)`, as it may hold spaces."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def start_ticks(fields: list[str]) -> str:
    """Return the start time (clock ticks after boot) from `stat_fields`, or "" when unknown."""
    return fields[STAT_START] if len(fields) > STAT_START and fields[STAT_START].isdigit() else ""


def kernel_thread(fields: list[str]) -> bool:
    """Return True for a kernel thread: the PF_KTHREAD flag, never the PID (inside a container
    PID 2 is an ordinary process)."""
    return len(fields) > STAT_FLAGS and fields[STAT_FLAGS].isdigit() and bool(int(fields[STAT_FLAGS]) & PF_KTHREAD)


def process_app(info: dict, fields: list[str]) -> App | None:
    """Given one process's info (pid, ppid, name, exe, username and uid, the real one, as
    psutil's process_iter gives them; None where it is unknown) and its `stat_fields`, return its
    App, or None for kernel threads."""
    exe = info.get("exe") or ""
    name = info.get("name") or ""
    if (not exe and not name) or kernel_thread(fields):
        return None
    uid = info.get("uid")
    extra = [("pid", str(info["pid"])), ("ppid", str(info.get("ppid") or 0)), ("start", start_ticks(fields))]
    if uid is not None:
        extra.append(("uid", str(uid)))
    return App(
        source="process", id=name or os.path.basename(exe), name=name or os.path.basename(exe),
        path=exe, user=info.get("username") or "", extra=tuple((k, v) for k, v in extra if v),
    )


class ProcessCollector:
    """Running processes of the live system (skipped when reading a mounted image)."""

    name = "process"
    live_only = True

    def unavailable(self, ctx: Context) -> str | None:
        return None

    def collect(self, ctx: Context) -> Collected:
        listed = proc_processes() if sys.platform.startswith("linux") else psutil_processes()
        apps = [app for info, fields in listed if (app := process_app(info, fields)) is not None]
        return Collected(apps=apps)


def psutil_processes() -> Iterator[tuple[dict[str, Any], list[str]]]:
    """Yield (info, stat fields) for each running process, as psutil lists them (by PID)."""
    import psutil

    # psutil (6 and later) keeps the Process objects of earlier calls and silently skips a
    # PID reused since then; a fresh table makes a banned program on a reused PID visible.
    getattr(psutil.process_iter, "cache_clear", lambda: None)()
    for proc in psutil.process_iter(["pid", "ppid", "name", "exe", "username", "uids"]):
        info, uids = dict(proc.info), proc.info.get("uids")
        info["uid"] = None if uids is None else uids.real
        yield info, stat_fields(proc.pid)


COMM_LENGTH = 15
"""The kernel keeps 15 characters of a process's name (TASK_COMM_LEN - 1)."""
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def proc_processes(proc: str = "/proc") -> list[tuple[dict[str, Any], list[str]]]:
    """Return (info, stat fields) for each process under `proc` but kernel threads, by PID; a
    process that ends while it is read is left out, as psutil leaves it out.

    Why without kernel threads: `process_app` makes no App of one, and they are most of a
    machine's processes (59 of 88 here); known by `stat` alone, they are left before their
    `status`, `exe` and `cmdline` are read (~45,000 instructions each).
    """
    users: dict[int, str] = {}
    listed = []
    for pid in sorted(int(entry) for entry in os.listdir(proc) if entry.isdigit()):
        try:
            read = _proc_process(f"{proc}/{pid}", pid, users)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if read is not None:
            listed.append(read)
    return listed


def _proc_process(folder: str, pid: int, users: dict[int, str]) -> tuple[dict[str, Any], list[str]] | None:
    """Read one process: its name and fields from `stat`, the real uid from `status`, the
    executable from the `exe` link; None for a kernel thread (by `stat`). Raise
    FileNotFoundError when it has ended."""
    stat = _read(f"{folder}/stat")
    close = stat.rfind(b")")
    name = stat[stat.find(b"(") + 1:close].decode(_FS_ENCODING, _FS_ERRORS)
    fields = stat[close + 1:].decode("ascii", "replace").split()
    if len(fields) < 2:
        raise FileNotFoundError(folder)
    if kernel_thread(fields):
        return None
    zombie = fields[0] == "Z"
    command: list[str] | None = None
    if len(name) >= COMM_LENGTH:  # cut by the kernel: argv[0]'s name when it starts the same way
        command = _command_line(folder)
        if command and os.path.basename(command[0]).startswith(name):
            name = os.path.basename(command[0])
    uid = _real_uid(folder)
    info = {"pid": pid, "ppid": int(fields[1]), "name": name, "exe": _executable(folder, zombie, command),
            "uid": uid, "username": None if uid is None else _user(uid, users)}
    return info, fields


def _executable(folder: str, zombie: bool, command: list[str] | None) -> str | None:
    """The `exe` link as psutil reads it (what follows a NUL is garbage, a " (deleted)" suffix
    is dropped unless such a file exists); when the link cannot be read (another user's process
    without root), argv[0] if it is an absolute path to an executable file, else None; "" for a
    process without one (a kernel thread), None for a zombie."""
    try:
        path = os.readlink(f"{folder}/exe").split("\x00")[0]
    except PermissionError:
        return _guessed_executable(folder, command) or None
    except (FileNotFoundError, ProcessLookupError):
        if not os.path.lexists(folder):
            raise
        return None if zombie else _guessed_executable(folder, command)
    if path.endswith(" (deleted)") and not os.path.exists(path):
        path = path[:-len(" (deleted)")]
    return path or _guessed_executable(folder, command)


def _guessed_executable(folder: str, command: list[str] | None) -> str:
    command = _command_line(folder) if command is None else command
    candidate = command[0] if command else ""
    if os.path.isabs(candidate) and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    return ""


def _command_line(folder: str) -> list[str]:
    """The arguments in `cmdline` (NUL-separated; a program that rewrote its title may use
    spaces), [] when they cannot be read."""
    try:
        data = _read(f"{folder}/cmdline").decode(_FS_ENCODING, _FS_ERRORS)
    except OSError:
        return []
    data = data.replace("\r\n", "\n").replace("\r", "\n")  # as a text-mode read gives it (and psutil reads it)
    if not data:
        return []
    separator = "\x00" if data.endswith("\x00") else " "
    if data.endswith(separator):
        data = data[:-1]
    arguments = data.split(separator)
    if separator == "\x00" and len(arguments) == 1 and " " in data:
        arguments = data.split(" ")
    return arguments


def _real_uid(folder: str) -> int | None:
    """The real uid from the `Uid:` line of `status`, None when it cannot be read."""
    try:
        status = _read(f"{folder}/status")
    except PermissionError:
        return None
    start = status.find(b"\nUid:")
    if start < 0:
        return None
    return int(status[start + 5:].split(None, 1)[0])


def _read(path: str) -> bytes:
    """Return the whole of a /proc file, read with plain descriptor calls: a process has three,
    and `open`'s file objects (a buffer and, for text, a decoder) cost more than the reads."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        chunks = []
        while chunk := os.read(fd, _READ_SIZE):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


_READ_SIZE = 65536


def _user(uid: int, users: dict[int, str]) -> str:
    """The login name of `uid` (its number when the system knows none), looked up once per scan."""
    if uid not in users:
        users[uid] = host.user_name(uid) or str(uid)
    return users[uid]
