"""The state directory's lock and atomic files, on a real file system."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from agent.atomic import write_atomic
from agent.service.state import LOCK, LockHeld, acquire_lock, lock_holder, read_status, write_status


def test_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    assert lock_holder(tmp_path) is None
    held = acquire_lock(tmp_path)
    assert lock_holder(tmp_path) == os.getpid()
    with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
        acquire_lock(tmp_path)
    held.close()
    assert lock_holder(tmp_path) is None
    acquire_lock(tmp_path).close()


def test_a_status_check_in_progress_does_not_refuse_the_service(tmp_path: Path) -> None:
    (tmp_path / LOCK).write_text("")
    with open(tmp_path / LOCK) as probe:
        fcntl.flock(probe, fcntl.LOCK_SH)
        threading.Timer(0.3, probe.close).start()
        started = time.monotonic()
        acquire_lock(tmp_path).close()
    assert time.monotonic() - started >= 0.25


def test_atomic_write_and_status_round_trip(tmp_path: Path) -> None:
    write_atomic(tmp_path / "f", b"one")
    write_atomic(tmp_path / "f", b"two")
    assert (tmp_path / "f").read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
    assert read_status(tmp_path) is None
    write_status(tmp_path, {"serial": 3})
    assert read_status(tmp_path) == {"serial": 3}


def test_an_unreadable_lock_is_an_error_not_not_running(tmp_path: Path) -> None:
    (tmp_path / LOCK).mkdir()
    with pytest.raises(OSError):
        lock_holder(tmp_path)
