"""What Linux and macOS share: flock(2) locks, SIGHUP for reload, the password database.

Why fcntl's flock and not a library: the service needs three things at once — a non-blocking try
that leaves the holder's pid readable in the same file, a blocking wait for the cache, and a
shared-lock *probe* with which `appban status` tells "running" from "stale file" without taking
the lock. filelock offers the first two only (and no probe), so a few lines over the system calls
are both smaller and exact; the kernel drops a flock when its process dies, even by kill -9.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import IO, Any, Callable


def _flock_now(handle: IO[Any], shared: bool) -> bool:
    """Take the lock without waiting; return False when another process holds it."""
    import fcntl

    try:
        fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def try_lock(handle: IO[Any]) -> bool:
    return _flock_now(handle, shared=False)


def wait_lock(handle: IO[Any]) -> None:
    import fcntl

    fcntl.flock(handle, fcntl.LOCK_EX)


def is_locked(handle: IO[Any]) -> bool:
    if not _flock_now(handle, shared=True):
        return True
    import fcntl

    fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def stop_signals() -> tuple[int, ...]:
    import signal  # here, not at the top: only the service handles signals, and a check starts faster

    return (signal.SIGTERM, signal.SIGINT)


def on_reload(request: Callable[[], None], config_path: Path | None) -> Callable[[], None]:
    import signal

    previous = signal.signal(signal.SIGHUP, lambda signum, frame: request())
    return lambda: signal.signal(signal.SIGHUP, previous)


def user_name(uid: int) -> str | None:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def current_uid() -> int | None:
    return os.getuid()


def os_name() -> str:
    """The kernel's name and release, as platform.system() and platform.release() give them on
    POSIX (both read uname); importing platform (and its regexes) cost ~2 ms of every check."""
    uname = os.uname()
    return f"{uname.sysname} {uname.release}"


def host_name() -> str:
    """The node name, which is what gethostname(2) returns (glibc and macOS read it from uname)."""
    return os.uname().nodename
