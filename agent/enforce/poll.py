"""Kill-on-launch: the fallback where fanotify is unavailable (no CAP_SYS_ADMIN, old kernel).

It cannot stop the first instructions of a banned program, only its life: every `interval` it
looks at processes it has not seen before and stops those whose executable the deny set names,
through the same pidfd-checked `terminate` that enforcement uses. Same `start()/stop()` shape as
ExecGuard, so the daemon treats both alike.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from typing import Callable

from agent.enforce.deny import DenySet, VerdictCache, sha256_fd
from agent.enforce.execguard import Denial
from agent.enforce.processes import Identity, KillError, terminate, unsafe_reason
from agent.inventory.process import start_ticks, stat_fields
from agent.log import log_event

logger = logging.getLogger(__name__)


class KillOnLaunch:
    """Watch for new processes every `interval` seconds and stop the banned ones."""

    def __init__(
        self, deny: DenySet, interval: float = 0.5, grace: float = 3.0,
        on_deny: Callable[[Denial], None] | None = None, proc: str = "/proc",
    ) -> None:
        self.deny = deny
        self.interval = interval
        self.grace = grace
        self.on_deny = on_deny
        self.proc = proc
        self.stats: Counter[str] = Counter()
        self._cache = VerdictCache()
        self._seen: dict[int, tuple[str, str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="appban-killonlaunch", daemon=True)
        self._thread.start()
        log_event(logger, logging.INFO, "killonlaunch.started", interval=self.interval)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        log_event(logger, logging.INFO, "killonlaunch.stopped", **dict(self.stats))

    def update(self, deny: DenySet) -> None:
        """Judge every process again under the new deny set."""
        self._cache = VerdictCache()
        self.deny = deny
        self._seen = {}

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan()
            except Exception as exc:  # noqa: BLE001 - one bad pass must not end the watch
                self.stats["errors"] += 1
                log_event(logger, logging.ERROR, "killonlaunch.error", error=f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.interval)

    def scan(self) -> list[Denial]:
        """Look at every process whose (start time, executable) was not seen before — a process
        that execs keeps its PID and start time, so the executable is part of what was seen —
        and stop and return the banned ones."""
        current: dict[int, tuple[str, str]] = {}
        stopped = []
        for name in os.listdir(self.proc):
            if not name.isdigit():
                continue
            pid = int(name)
            started = _start_time(self.proc, pid)
            try:
                exe = os.readlink(f"{self.proc}/{pid}/exe").removesuffix(" (deleted)")
            except OSError:
                continue
            if started is None:
                continue
            current[pid] = (started, exe)
            if self._seen.get(pid) == current[pid]:
                continue
            denial = self._judge(Identity(pid, exe, started))
            if denial is not None:
                stopped.append(denial)
        self._seen = current
        return stopped

    def _judge(self, seen: Identity) -> Denial | None:
        pid, exe = seen.pid, seen.exe
        entry = self._verdict(exe)
        if not entry or unsafe_reason(pid, self.proc):
            return None
        try:
            terminate(seen, self.grace)
        except KillError as exc:
            self.stats["failed"] += 1
            log_event(logger, logging.WARNING, "killonlaunch.failed", pid=pid, path=exe, rule=entry, error=str(exc))
            return None
        self.stats["killed"] += 1
        denial = Denial(exe, pid, entry)
        log_event(logger, logging.WARNING, "killonlaunch.killed", pid=pid, path=exe, rule=entry)
        if self.on_deny is not None:
            self.on_deny(denial)
        return denial

    def _verdict(self, exe: str) -> str:
        try:
            fd = os.open(exe, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return self.deny.verdict(exe, lambda: "")
        try:
            st = os.fstat(fd)
            cached = self._cache.get(st, exe)
            if cached is None:
                cached = self.deny.verdict(exe, lambda: sha256_fd(fd))
                self._cache.put(st, exe, cached)
            return cached
        finally:
            os.close(fd)


def _start_time(proc: str, pid: int) -> str | None:
    """Return a process's start time (in clock ticks since boot), which tells a reused PID apart."""
    return start_ticks(stat_fields(pid, proc)) or None
