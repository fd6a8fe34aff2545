"""The service's wake-up: what the main loop sleeps on and what signal handlers poke.

Why a self-pipe and not `threading.Event`: a Python signal handler runs in the main thread
between two bytecodes, possibly while that same thread holds the Event's internal lock (inside
`wait()` or `clear()`); `Event.set()` from the handler then waits for a lock its own thread holds,
forever (the class of CPython issue #126434, for multiprocessing.Event). Writing one byte to a
non-blocking pipe takes no lock at all. The pipe is also registered with
`signal.set_wakeup_fd`, so the C-level handler writes to it the moment a signal arrives, in
whichever thread the kernel delivered it to, and the sleeping main thread wakes at once.
The "pipe" is a connected socket pair: on Windows `select` and `set_wakeup_fd` take sockets only.
"""

from __future__ import annotations

import select
import signal
import socket


class Wakeup:
    """A level-triggered wake-up: `set` (from a signal handler or any thread) makes the current
    or next `wait` return at once, until `clear`."""

    def __init__(self) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._previous_fd: int | None = None

    def install(self) -> None:
        """Have every signal with a Python handler wake the loop (call from the main thread)."""
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)

    def set(self) -> None:
        """Wake the loop; safe in a signal handler (no lock, never blocks)."""
        try:
            self._write.send(b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the loop is already certain to wake

    def clear(self) -> None:
        """Forget the wake-ups so far (call before checking the flags they announce)."""
        try:
            while self._read.recv(4096):
                pass
        except BlockingIOError:
            pass

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or `timeout` seconds pass; return True when woken."""
        ready, _, _ = select.select([self._read], [], [], max(timeout, 0.0))
        return bool(ready)

    def close(self) -> None:
        """Unregister from the signal module and close the pipe."""
        if self._previous_fd is not None:
            signal.set_wakeup_fd(self._previous_fd)
            self._previous_fd = None
        self._read.close()
        self._write.close()
