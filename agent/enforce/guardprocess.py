"""The exec guard in its own process, which is how the service runs it.

Why a process and not a thread of the agent: every exec on the machine waits for the guard's
answer, and a Python thread answers only when it holds the GIL. In the agent's own process that
means waiting behind a scan or a report (up to the interpreter's switch interval per exec), and an
`os.execv*` by the agent itself (which holds the GIL) could never be answered. A small worker
process that does nothing but answer avoids both; if it dies, the kernel drops its fanotify group
and allows everything (fail-open), and the agent sees it exit.

Protocol (JSON lines): the agent writes `{"start": {...settings}, "deny": {...}}`, then any number
of `{"deny": {...}}` updates; closing stdin stops the worker. The worker answers `{"ready": true}`
or `{"unavailable": "why"}`, `{"updated": true}` once an update is in force (its ignore marks
dropped), `{"denied": {...}}` per denial and `{"stats": {...}}` at exit; an update it cannot put
in force is `{"unavailable": "why"}`, and the worker exits.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections import Counter
from typing import IO, Any, Callable, Sequence

from agent import log
from agent.enforce.deny import DenySet
from agent.enforce.execguard import Denial, ExecGuard, GuardUnavailable
from agent.log import log_event

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def deny_to_dict(deny: DenySet) -> dict[str, Any]:
    return {"paths": dict(deny.paths), "names": dict(deny.names), "sha256": dict(deny.sha256),
            "allowed": sorted(deny.allowed), "protected": list(deny.protected)}


def deny_from_dict(data: dict[str, Any]) -> DenySet:
    return DenySet(paths=data["paths"], names=data["names"], sha256=data["sha256"],
                   allowed=frozenset(data["allowed"]), protected=tuple(data["protected"]))


class GuardProcess:
    """Same `start()/update()/stop()` as ExecGuard, with the answering done in a worker process."""

    def __init__(
        self, deny: DenySet, mounts: Sequence[str] = (), deadline: float = 0.25,
        fail_closed: bool = False, on_deny: Callable[[Denial], None] | None = None,
    ) -> None:
        self.deny = deny
        self.settings = {"mounts": list(mounts), "deadline": deadline, "fail_closed": fail_closed,
                         "agent_pid": os.getpid(), "log_level": logging.getLogger("agent").getEffectiveLevel()}
        self.on_deny = on_deny
        self.stats: Counter[str] = Counter()
        self._worker: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._updated = threading.Semaphore(0)
        self._failure = ""

    def start(self) -> None:
        """Start the worker and wait until it guards. Raise GuardUnavailable if it cannot."""
        self._worker = subprocess.Popen(
            [sys.executable, "-m", "agent.enforce.guardprocess"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, bufsize=1, close_fds=True,
        )
        self._send({"start": self.settings, "deny": deny_to_dict(self.deny)})
        self._reader = threading.Thread(target=self._read, name="appban-guard-reader", daemon=True)
        self._reader.start()
        if not self._ready.wait(STARTUP_TIMEOUT) or self._failure:
            self.stop()
            raise GuardUnavailable(self._failure or "exec guard worker did not start")

    def update(self, deny: DenySet) -> None:
        """Send a new deny set and wait until the worker uses it (so the caller knows the new list
        is in force when this returns). Raise GuardUnavailable if the worker does not confirm."""
        self.deny = deny
        if self._worker is not None:
            self._send({"deny": deny_to_dict(deny)})
            if not self._updated.acquire(timeout=STARTUP_TIMEOUT) or self._failure:
                raise GuardUnavailable(self._failure or "exec guard worker did not confirm the new deny set")

    def stop(self) -> None:
        if self._worker is None:
            return
        worker, self._worker = self._worker, None
        try:
            assert worker.stdin is not None
            worker.stdin.close()
            worker.wait(STOP_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            worker.kill()
            worker.wait()
        if self._reader is not None:
            self._reader.join()

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.poll() is None

    def _send(self, message: dict[str, Any]) -> None:
        assert self._worker is not None and self._worker.stdin is not None
        self._worker.stdin.write(json.dumps(message) + "\n")
        self._worker.stdin.flush()

    def _read(self) -> None:
        assert self._worker is not None and self._worker.stdout is not None
        for line in self._worker.stdout:
            message = json.loads(line)
            if "ready" in message:
                self._ready.set()
            elif "unavailable" in message:
                self._failure = message["unavailable"]
                self._ready.set()
                self._updated.release()
            elif "updated" in message:
                self._updated.release()
            elif "denied" in message and self.on_deny is not None:
                try:
                    self.on_deny(Denial(**message["denied"]))
                except Exception as exc:  # noqa: BLE001 - reporting must not stop the reader
                    log_event(logger, logging.ERROR, "execguard.report_failed", error=str(exc))
            elif "stats" in message:
                self.stats.update(message["stats"])
        if not self._failure and not self.stats:
            log_event(logger, logging.ERROR, "execguard.worker_exited")
        self._failure = self._failure or "exec guard worker exited"
        self._ready.set()
        self._updated.release()  # an update still waiting learns it was not confirmed


def _emit(out: IO[str], lock: threading.Lock, message: dict[str, Any]) -> None:
    """Tell the agent; an agent that has gone (exec, crash) just is not told."""
    with lock:
        try:
            out.write(json.dumps(message) + "\n")
            out.flush()
        except BrokenPipeError:
            pass


def main() -> int:
    """The worker: guard until stdin closes (see the module docstring)."""
    first = json.loads(sys.stdin.readline())
    settings = first["start"]
    log.configure("text", logging.getLevelName(settings["log_level"]).lower())
    lock = threading.Lock()
    guard = ExecGuard(
        deny_from_dict(first["deny"]), settings["mounts"], settings["deadline"], settings["fail_closed"],
        on_deny=lambda d: _emit(sys.stdout, lock, {"denied": {"path": d.path, "pid": d.pid, "entry": d.entry}}),
        allow_pids=frozenset({settings["agent_pid"]}),
    )
    try:
        guard.start()
    except GuardUnavailable as exc:
        _emit(sys.stdout, lock, {"unavailable": str(exc)})
        return 1
    _emit(sys.stdout, lock, {"ready": True})
    for line in sys.stdin:
        try:
            guard.update(deny_from_dict(json.loads(line)["deny"]))
        except OSError as exc:  # the old set's ignore marks could not be dropped
            log_event(logger, logging.ERROR, "execguard.update_failed", error=str(exc))
            _emit(sys.stdout, lock, {"unavailable": f"exec guard could not drop its ignore marks: {exc}"})
            return 1
        _emit(sys.stdout, lock, {"updated": True})
    guard.stop()
    _emit(sys.stdout, lock, {"stats": dict(guard.stats)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
