"""Linux: the POSIX parts, the machine id of systemd (machine-id(5)) and systemd as service manager."""

from __future__ import annotations


from agent.platform._posix import (current_uid, host_name, is_locked, on_reload, os_name, stop_signals, try_lock,
                                   user_name, wait_lock)
from agent.platform.identity import MACHINE_ID, read_machine_id

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from agent.runner import Runner

NAME = "linux"
CONFIG_FILE = "/etc/appban/agent.yaml"
STATE_DIR = "/var/lib/appban"

__all__ = ["NAME", "CONFIG_FILE", "STATE_DIR", "current_uid", "is_locked", "on_reload", "stop_signals", "try_lock", "user_name", "wait_lock",
           "live_device_id", "os_name", "host_name"]


def live_device_id(runner: Runner) -> str:
    """Return /etc/machine-id, or "" when the system has none (a container without systemd)."""
    return read_machine_id(MACHINE_ID)
