"""Stopping a banned app's running processes: terminate, wait, kill — children included.

Why pidfds: a PID number can be reused between the scan that saw it and the signal. A pidfd
refers to one process for its whole life, so the agent opens it first, then checks that this very
process still runs the matched executable, and only then signals it; a reused PID is never hit.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from typing import Iterable

import psutil

from agent.log import log_event

logger = logging.getLogger(__name__)

KILL_WAIT = 5.0
"""How long to wait after SIGKILL before calling a process unkillable (it is in the kernel)."""


class KillError(RuntimeError):
    """A process that must not or could not be stopped; the message is one line."""


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
    if _is_kernel_thread(pid, proc):
        return "kernel thread"
    return ""


def unsafe_pids(pids: Iterable[int], proc: str = "/proc") -> dict[int, str]:
    """Return {pid: reason} for every pid in `pids` that must not be signalled."""
    reasons = {pid: unsafe_reason(pid, proc) for pid in set(pids)}
    return {pid: why for pid, why in reasons.items() if why}


def stat_fields(pid: int, proc: str = "/proc") -> list[str]:
    """Return the fields of /proc/PID/stat after the command name (index 0 is the state), or []
    when the process is gone. The name is skipped by its last `)`, as it may hold spaces."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _is_kernel_thread(pid: int, proc: str) -> bool:
    """Kernel threads have no executable and are children of kthreadd (pid 2)."""
    fields = stat_fields(pid, proc)
    if len(fields) < 7:
        return False
    ppid, flags = int(fields[1]), int(fields[6])
    pf_kthread = 0x00200000
    return pid == 2 or ppid == 2 or bool(flags & pf_kthread)


def running_exe(pid: int) -> str:
    """Return the executable a process runs (without the kernel's " (deleted)" mark).

    Raise KillError if it cannot be read (exited, or a kernel thread).
    """
    try:
        return os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except FileNotFoundError:
        raise KillError(f"pid {pid} has exited") from None
    except OSError as exc:
        raise KillError(f"pid {pid}: cannot read its executable: {exc.strerror}") from None


def terminate(pid: int, exe: str, grace: float = 3.0) -> int:
    """Given a pid and the executable it was matched on, stop it and its children: SIGTERM,
    wait up to `grace` seconds, then SIGKILL. Return how many processes were stopped.

    Raise KillError if no executable is given, the pid now runs another one (reused PID), is
    unsafe, or survives.
    """
    why = unsafe_reason(pid)
    if why:
        raise KillError(f"pid {pid}: {why}")
    if not exe:
        raise KillError(f"pid {pid}: no executable was recorded, so a reused PID could not be told apart; not touched")
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise KillError(f"pid {pid} has exited") from None
    fds = [pidfd]
    try:
        now_running = running_exe(pid)
        if now_running != exe.removesuffix(" (deleted)"):
            raise KillError(f"pid {pid} now runs {now_running}, not {exe}: PID reused, not touched")
        fds += _children_fds(pid)
        _signal_all(fds, signal.SIGTERM)
        alive = _wait(fds, grace)
        if alive:
            _signal_all(alive, signal.SIGKILL)
            alive = _wait(alive, KILL_WAIT)
        if alive:
            raise KillError(f"pid {pid}: {len(alive)} process(es) survived SIGKILL")
        log_event(logger, logging.INFO, "enforce.killed", pid=pid, exe=exe, processes=len(fds))
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
