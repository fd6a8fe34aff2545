"""Running processes (psutil): a banned app that is running is found even when no package
database knows it, e.g. a binary copied into a home folder.

Each record keeps what tells this process apart from a later one that reuses its PID: its start
time in clock ticks after boot (`/proc/PID/stat` field 22) and its real uid, read at scan time;
enforcement signals a PID only while both (and the executable) still match.
"""

from __future__ import annotations

import os

import psutil

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
    """Given psutil's info dict for one process and its `stat_fields`, return its App, or None
    for kernel threads."""
    exe = info.get("exe") or ""
    name = info.get("name") or ""
    if (not exe and not name) or kernel_thread(fields):
        return None
    uids = info.get("uids")
    extra = [("pid", str(info["pid"])), ("ppid", str(info.get("ppid") or 0)), ("start", start_ticks(fields))]
    if uids is not None:
        extra.append(("uid", str(uids.real)))
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
        apps = []
        # psutil (6 and later) keeps the Process objects of earlier calls and silently skips a
        # PID reused since then; a fresh table makes a banned program on a reused PID visible.
        getattr(psutil.process_iter, "cache_clear", lambda: None)()
        for proc in psutil.process_iter(["pid", "ppid", "name", "exe", "username", "uids"]):
            app = process_app(proc.info, stat_fields(proc.pid))
            if app is not None:
                apps.append(app)
        return Collected(apps=apps)
