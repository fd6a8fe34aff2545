"""macOS: the POSIX parts, the hardware UUID (IOPlatformUUID, from `ioreg`) and launchd.

Why ioreg: IOPlatformUUID is what `system_profiler` calls the Hardware UUID and what MDMs key
devices by; it survives reinstalls and renames, and `ioreg -rd1 -c IOPlatformExpertDevice` prints
it without root.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agent.log import log_event
from agent.platform._posix import (current_uid, host_name, is_locked, on_reload, os_name, stop_signals, try_lock,
                                   user_name, wait_lock)
from agent.platform.identity import platform_uuid

if TYPE_CHECKING:
    from agent.runner import Runner

logger = logging.getLogger(__name__)

NAME = "macos"
CONFIG_FILE = "/Library/Application Support/appban/agent.yaml"
STATE_DIR = "/Library/Application Support/appban/state"
"""Where the .pkg and its LaunchDaemon keep them (packaging/macos)."""
IOREG_TIMEOUT = 10.0
IOREG_ARGS = ("-rd1", "-c", "IOPlatformExpertDevice")

__all__ = ["NAME", "CONFIG_FILE", "STATE_DIR", "current_uid", "is_locked", "on_reload", "stop_signals", "try_lock", "user_name", "wait_lock",
           "live_device_id", "os_name", "host_name"]


def live_device_id(runner: Runner) -> str:
    """Return the IOPlatformUUID `ioreg` prints, or "" when ioreg fails or prints none."""
    from agent.runner import CommandError

    try:
        result = runner.run("ioreg", IOREG_ARGS, timeout=IOREG_TIMEOUT)
    except CommandError as exc:
        log_event(logger, logging.WARNING, "identity.unavailable", source="ioreg", error=str(exc))
        return ""
    return platform_uuid(result.stdout)
