"""What the service leaves in its state directory: the single-instance lock (with the pid), the
latest report and inventory, and a status file, so `appban status` can answer without the
service's help and a restarted service or a human can read the last results."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, IO

from agent import platform as host
from agent.atomic import write_atomic

LOCK = "appban.lock"
REPORT = "report.json"
INVENTORY = "inventory.json"
STATUS = "status.json"
LOCK_PATIENCE = 1.0


class LockHeld(RuntimeError):
    """Another `appban run` holds the state directory's lock."""


def acquire_lock(state_dir: Path) -> IO[str]:
    """Take the exclusive lock (agent.platform: released by the OS even after kill -9) and write our pid.

    `appban status` holds a shared lock for an instant to test it, so a busy lock is retried for
    LOCK_PATIENCE seconds before giving up. Return the open lock file, which must stay open while
    the service runs. Raise LockHeld naming the holder's pid.
    """
    handle = open(state_dir / LOCK, "a+", encoding="ascii")  # noqa: SIM115 - held for the process's life
    deadline = time.monotonic() + LOCK_PATIENCE
    while not host.try_lock(handle):
        if time.monotonic() >= deadline:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise LockHeld(f"another appban run (pid {holder}) holds {state_dir / LOCK}") from None
        time.sleep(0.05)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def lock_holder(state_dir: Path) -> int | None:
    """Return the pid of the running service that holds the lock, or None when none does.

    Raise OSError (e.g. permission denied) when the lock file exists but cannot be opened, so a
    caller without access is not told "not running".
    """
    try:
        handle = open(state_dir / LOCK, encoding="ascii")  # noqa: SIM115
    except FileNotFoundError:
        return None
    with handle:
        if host.is_locked(handle):
            text = handle.read().strip()
            return int(text) if text.isdigit() else 0
        return None


def write_status(state_dir: Path, status: dict[str, Any]) -> None:
    """Save the service's status facts for `appban status`."""
    write_atomic(state_dir / STATUS, json.dumps(status, indent=2, default=str).encode() + b"\n")


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """Return the last saved status facts, or None when the service never saved any."""
    try:
        data = json.loads((state_dir / STATUS).read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
