"""Reload on a config-file change, for Windows, which has no SIGHUP.

A daemon thread compares the file's modification time and size every POLL seconds and calls
back when they change (a save, a replace by rename, a copy over). Polling rather than a change
notification API: the config is one small file, a few seconds' delay is fine, and the same code
then runs and is tested on every OS.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

POLL = 5.0


def signature(path: Path) -> tuple[int, int] | None:
    """Return (mtime in ns, size) of the file, or None while it does not exist."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class FileWatch:
    """Calls `on_change()` from its own thread each time the file at `path` changes."""

    def __init__(self, path: Path, on_change: Callable[[], None], poll: float | None = None) -> None:
        self.path = path
        self.on_change = on_change
        self.poll = POLL if poll is None else poll
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="appban-config-watch", daemon=True)
        self._seen = signature(path)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.poll + 1.0)

    def _run(self) -> None:
        while not self._stopped.wait(self.poll):
            now = signature(self.path)
            if now != self._seen and now is not None:
                self._seen = now
                self.on_change()
