"""The platform seam: everything that differs between Linux, macOS and Windows, behind one face.

As psutil does, one small private module per OS (`_linux`, `_macos`, `_windows`, with what Linux
and macOS share in `_posix`) and this facade that picks one at import time. The OS modules import
their OS-only modules (fcntl, pwd, msvcrt, winreg) inside the functions that need them, so every
module of the package imports on every OS; no module outside this package imports them at all.

What lives here: the single-instance and cache locks, the reload trigger, the user names behind
desktop sessions (for notifications), the device's stable identity, the trust store for TLS and
which service manager runs the agent.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from agent.platform.identity import image_device_id

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import IO, Any, Callable

    from agent.runner import Runner


def _select(name: str) -> ModuleType:
    """Return the OS module for a `sys.platform` value (Linux rules for other POSIX systems);
    only that one is imported, so start-up pays for nothing another OS needs."""
    module = {"win32": "_windows", "darwin": "_macos"}.get(name, "_linux")
    return importlib.import_module(f"agent.platform.{module}")


OS: ModuleType = _select(sys.platform)
"""The module in force. Calls below look it up each time, so the contract test can put the
Windows module in place on Linux (with a stand-in msvcrt) and run the service through it."""

__all__ = ["OS", "image_device_id", "system_trust", "try_lock", "wait_lock", "is_locked", "stop_signals",
           "on_reload", "user_name", "current_uid", "live_device_id", "SERVICE_MANAGERS", "service_manager",
           "default_config_file", "default_state_dir", "os_name", "host_name"]

SERVICE_MANAGERS = {"linux": "systemd", "macos": "launchd", "windows": "winsw"}
"""What runs `appban run` in the background on each OS (see packaging/ and docs/platforms.md)."""


def system_trust() -> str | bool:
    """Return requests' `verify=` for the OS trust store (agent.platform.trust; imported on use,
    as it loads ssl, which a check that fetches nothing never needs)."""
    from agent.platform.trust import system_trust as trusted

    return trusted()


def try_lock(handle: IO[Any]) -> bool:
    """Given an open file, take its exclusive lock if free; return False when another holds it.

    The kernel releases the lock when the holder's process ends, however it ends (kill -9 too).
    """
    return OS.try_lock(handle)


def wait_lock(handle: IO[Any]) -> None:
    """Given an open file, wait until its exclusive lock is ours (held until the file is closed)."""
    OS.wait_lock(handle)


def is_locked(handle: IO[Any]) -> bool:
    """Return True when another process holds the file's exclusive lock (a probe: takes nothing)."""
    return OS.is_locked(handle)


def stop_signals() -> tuple[int, ...]:
    """Return the signals that ask the service to stop cleanly on this OS (Ctrl+C and Ctrl+Break
    on Windows, which is how WinSW stops a console program; SIGTERM and SIGINT on POSIX)."""
    return OS.stop_signals()


def on_reload(request: Callable[[], None], config_path: Path | None) -> Callable[[], None]:
    """Arrange for `request()` to be called when the administrator asks for a reload; return the
    function that undoes it. POSIX: SIGHUP. Windows (no SIGHUP): a change to the config file."""
    return OS.on_reload(request, config_path)


def user_name(uid: int) -> str | None:
    """Return the login name of a numeric user id, or None when the system knows none."""
    return OS.user_name(uid)


def current_uid() -> int | None:
    """Return the numeric id of the user running appban (None on Windows, which has SIDs)."""
    return OS.current_uid()


def live_device_id(runner: Runner) -> str:
    """Return the running machine's stable id (machine-id, MachineGuid, IOPlatformUUID), or ""
    when it cannot be read; `runner` starts `ioreg` on macOS."""
    return OS.live_device_id(runner)


def os_name() -> str:
    """Return the running OS's name and release (`Linux 6.1.0-13-amd64`, `Windows 10`)."""
    return OS.os_name()


def host_name() -> str:
    """Return the running machine's host name."""
    return OS.host_name()


def default_config_file() -> str:
    """Return where this OS's package puts the config (/etc/appban/agent.yaml on Linux,
    /Library/Application Support/appban on macOS, %ProgramData%\\appban on Windows)."""
    return OS.CONFIG_FILE


def default_state_dir() -> str:
    """Return where this OS's package keeps the agent's state."""
    return OS.STATE_DIR


def service_manager() -> str:
    """Return the name of the service manager the agent runs under on this OS."""
    return SERVICE_MANAGERS[OS.NAME]
