"""Stopping a banned app's running processes: terminate, wait, kill — children included.

Why pidfds and start times: a PID number can be reused between the scan that saw it and the
signal. The scan records who the process was (`Identity`: executable, start time in clock ticks
after boot, real uid). A kill first opens a pidfd, which refers to one process for its whole
life, then checks that the process now on that PID is still the one the scan saw — same start
time, uid and executable — and only then signals through the pidfd. If the scanned process has
exited and its PID been reused, the start time differs and nothing is signalled; if it is still
there, the pidfd is that very process and the signal cannot reach another.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from dataclasses import dataclass
from typing import Iterable

import psutil

from agent.inventory.process import kernel_thread, start_ticks, stat_fields
from agent.log import log_event
from agent.model import App

logger = logging.getLogger(__name__)

KILL_WAIT = 5.0
"""How long to wait after SIGKILL before calling a process unkillable (it is in the kernel)."""


class KillError(RuntimeError):
    """A process that must not or could not be stopped; the message is one line."""


@dataclass(frozen=True)
class Identity:
    """Who a process was when the scan saw it: what tells it apart from a later process that
    reuses its PID. `uid` None means not recorded (kill-on-launch judges a process it has just read)."""

    pid: int
    exe: str
    start: str
    """Start time in clock ticks after boot, as /proc/PID/stat gives it."""
    uid: int | None = None

    @classmethod
    def of(cls, app: App) -> "Identity":
        """Return the identity the process collector recorded on a `process` App."""
        uid = app.extra_value("uid")
        return cls(int(app.extra_value("pid")), app.path, app.extra_value("start"),
                   int(uid) if uid.isdigit() else None)

    def now(self, proc: str = "/proc") -> "Identity":
        """Return who runs on this PID now (fields "" when they cannot be read)."""
        try:
            exe = os.readlink(f"{proc}/{self.pid}/exe").removesuffix(" (deleted)")
        except OSError:
            exe = ""
        return Identity(self.pid, exe, start_ticks(stat_fields(self.pid, proc)), _real_uid(self.pid, proc))

    def mismatch(self, current: "Identity") -> str:
        """Return how `current` differs from this identity ("" when it is the same process)."""
        if current.start != self.start:
            return f"started at tick {current.start or '?'}, not {self.start}"
        if self.uid is not None and current.uid != self.uid:
            return f"runs as uid {current.uid}, not {self.uid}"
        if current.exe != self.exe.removesuffix(" (deleted)"):
            return f"runs {current.exe or '?'}, not {self.exe}"
        return ""


def agent_pids() -> frozenset[int]:
    """Return the pids no rule may ever touch from this process: itself and its parent."""
    return frozenset({os.getpid(), os.getppid()})


def unsafe_reason(pid: int, proc: str = "/proc") -> str:
    """Given a pid, return why it must not be signalled (PID 1, the agent, a kernel thread, a
    process of another PID namespace or one that cannot be identified), or "" when it may be."""
    if pid <= 1:
        return "PID 1 (init) is never touched"
    if pid in agent_pids():
        return "the agent itself (or its parent)"
    try:
        own_ns = os.readlink(f"{proc}/self/ns/pid")
        their_ns = os.readlink(f"{proc}/{pid}/ns/pid")
    except FileNotFoundError:
        return "process has exited"
    except OSError:
        return "cannot identify the process's PID namespace"
    if their_ns != own_ns:
        return "process runs in another PID namespace"
    if kernel_thread(stat_fields(pid, proc)):
        return "kernel thread"
    return ""


def unsafe_pids(pids: Iterable[int], proc: str = "/proc") -> dict[int, str]:
    """Return {pid: reason} for every pid in `pids` that must not be signalled."""
    reasons = {pid: unsafe_reason(pid, proc) for pid in set(pids)}
    return {pid: why for pid, why in reasons.items() if why}


def _real_uid(pid: int, proc: str) -> int | None:
    """Return a process's real uid (the first `Uid:` field of /proc/PID/status), or None."""
    try:
        with open(f"{proc}/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def terminate(target: Identity, grace: float = 3.0) -> int:
    """Given the identity a scan recorded, stop that process and its children: SIGTERM, wait up
    to `grace` seconds, then SIGKILL. Return how many processes were stopped.

    Raise KillError if no executable or start time was recorded, the PID is now another process
    (reused PID: other start time, uid or executable), is unsafe, or survives.
    """
    pid = target.pid
    why = unsafe_reason(pid)
    if why:
        raise KillError(f"pid {pid}: {why}")
    if not target.exe or not target.start:
        raise KillError(f"pid {pid}: no executable or start time was recorded, so a reused PID could not be "
                        "told apart; not touched")
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise KillError(f"pid {pid} has exited") from None
    fds = [pidfd]
    try:
        current = target.now()
        if not current.start:
            raise KillError(f"pid {pid} has exited")
        changed = target.mismatch(current)
        if changed:
            raise KillError(f"pid {pid} {changed}: PID reused, not touched")
        fds += _children_fds(pid)
        _signal_all(fds, signal.SIGTERM)
        alive = _wait(fds, grace)
        if alive:
            _signal_all(alive, signal.SIGKILL)
            alive = _wait(alive, KILL_WAIT)
        if alive:
            raise KillError(f"pid {pid}: {len(alive)} process(es) survived SIGKILL")
        log_event(logger, logging.INFO, "enforce.killed", pid=pid, exe=target.exe, processes=len(fds))
        return len(fds)
    finally:
        for fd in fds:
            os.close(fd)


def _children_fds(pid: int) -> list[int]:
    """Open pidfds on a process's descendants, keeping only those whose start time still matches
    the snapshot (so a child that exited and whose PID was reused is left alone)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    fds = []
    for child in children:
        try:
            fd = os.pidfd_open(child.pid)
        except ProcessLookupError:
            continue
        try:
            same = psutil.Process(child.pid).create_time() == child.create_time()
        except psutil.Error:
            same = False
        if same and not unsafe_reason(child.pid):
            fds.append(fd)
        else:
            os.close(fd)
    return fds


def _signal_all(fds: list[int], signum: int) -> None:
    for fd in fds:
        try:
            signal.pidfd_send_signal(fd, signum)
        except ProcessLookupError:
            pass


def _wait(fds: list[int], timeout: float) -> list[int]:
    """Wait until every process behind `fds` has exited (a pidfd turns readable) or the timeout
    passes; return the fds of those still alive."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    alive = set(fds)
    deadline = time.monotonic() + timeout
    while alive:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd, _ in poller.poll(left * 1000):
            alive.discard(fd)
            poller.unregister(fd)
    return [fd for fd in fds if fd in alive]
