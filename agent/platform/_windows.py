"""Windows: msvcrt byte-range locks, reload on a config-file change, MachineGuid, WinSW.

Locks: msvcrt.locking() locks bytes of a file for the process, and Windows releases them when the
process ends. Windows locks are mandatory (a locked byte cannot be read by others), so the lock
sits on one byte far past the pid text, which `appban status` still reads.

Reload: Windows has no SIGHUP, and a Service Control Manager "paramchange" needs a service that
speaks to the SCM itself (WinSW does not forward it), so the service watches its config file and
reloads when it changes, as an edit-and-save is how an administrator changes it.
"""

from __future__ import annotations

import ntpath
import os
import signal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

from agent.platform.identity import parse_guid
from agent.platform.watch import FileWatch

if TYPE_CHECKING:
    from agent.runner import Runner

NAME = "windows"
_DATA = ntpath.join(os.environ.get("ProgramData") or r"C:\ProgramData", "appban")
CONFIG_FILE = ntpath.join(_DATA, "agent.yaml")
STATE_DIR = ntpath.join(_DATA, "state")
"""Where the .msi and its service keep them (packaging/windows)."""
LOCK_OFFSET = 1 << 20
"""The byte locked: past any pid text the file will hold."""
LOCK_POLL = 0.05
MACHINE_GUID_KEY = r"SOFTWARE\Microsoft\Cryptography"


def _lock_byte(handle: IO[Any], mode_name: str) -> None:
    import msvcrt

    handle.flush()
    position = handle.tell()
    handle.seek(LOCK_OFFSET)
    try:
        msvcrt.locking(handle.fileno(), getattr(msvcrt, mode_name), 1)
    finally:
        handle.seek(position)


def try_lock(handle: IO[Any]) -> bool:
    try:
        _lock_byte(handle, "LK_NBLCK")
    except OSError:
        return False
    return True


def wait_lock(handle: IO[Any]) -> None:
    """Wait for the lock (LK_LOCK gives up after ten seconds, so poll without a limit instead)."""
    import time

    while not try_lock(handle):
        time.sleep(LOCK_POLL)


def is_locked(handle: IO[Any]) -> bool:
    if not try_lock(handle):
        return True
    _lock_byte(handle, "LK_UNLCK")
    return False


def stop_signals() -> tuple[int, ...]:
    """Ctrl+C (SIGINT) is what WinSW sends on a service stop; Ctrl+Break arrives as SIGBREAK."""
    return tuple(getattr(signal, name) for name in ("SIGINT", "SIGBREAK", "SIGTERM") if hasattr(signal, name))


def on_reload(request: Callable[[], None], config_path: Path | None) -> Callable[[], None]:
    if config_path is None:
        return lambda: None
    watch = FileWatch(Path(config_path), request)
    watch.start()
    return watch.stop


def user_name(uid: int) -> str | None:
    return None


def current_uid() -> int | None:
    return None


def os_name() -> str:
    import platform

    return f"{platform.system()} {platform.release()}".strip()


def host_name() -> str:
    import socket

    return socket.gethostname()


def live_device_id(runner: Runner) -> str:
    """Return HKLM\\SOFTWARE\\Microsoft\\Cryptography\\MachineGuid (64-bit view), or "" if unreadable."""
    try:
        import winreg
    except ImportError:
        return ""
    try:
        access = winreg.KEY_READ | winreg.KEY_WOW64_64KEY
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, MACHINE_GUID_KEY, 0, access) as key:
            value, _kind = winreg.QueryValueEx(key, "MachineGuid")
    except OSError:
        return ""
    return parse_guid(value)
