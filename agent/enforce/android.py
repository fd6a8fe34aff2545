"""Blocking a banned app on an Android phone attached to the gateway, for the enforcement planner.

Two ways, chosen by config `gateway.android_block`: `pm uninstall -k --user N PKG` removes the app
for that user (work profiles are users) and keeps its data, so a wrongly listed app can be put
back; `pm disable-user --user N PKG` leaves it installed but unusable. Both act on one user only:
the same package in another profile is another finding. The argument lists are built by pure
functions from identifiers checked against Android's syntax, because `adb shell` hands them to
the phone's shell as one command line.
"""

from __future__ import annotations

import logging
from typing import Literal

from agent.inventory.android import PROGRAM, checked_package, checked_serial
from agent.log import log_event
from agent.runner import Runner

logger = logging.getLogger(__name__)

Method = Literal["uninstall", "disable"]
TIMEOUT = 60.0
_PM_WORDS: dict[str, tuple[str, ...]] = {
    "uninstall": ("pm", "uninstall", "-k"),
    "disable": ("pm", "disable-user"),
}
_SUCCESS = {"uninstall": "Success", "disable": "new state: disabled-user"}
"""What `pm` prints when it worked (it exits 0 on some failures, so the text decides)."""


def block_arguments(method: Method, serial: str, user: int, package: str) -> list[str]:
    """Given the method, the phone's adb serial, the Android user id and the package, return the
    `adb` arguments that block it. Raise UnsafeIdentifierError for a serial or package name
    without the platform's syntax, ValueError for an unknown method or a negative user."""
    if method not in _PM_WORDS:
        raise ValueError(f"unknown Android blocking method {method!r} (uninstall or disable)")
    if user < 0:
        raise ValueError(f"bad Android user id {user}")
    return ["-s", checked_serial(serial), "shell", *_PM_WORDS[method], "--user", str(user), checked_package(package)]


def block(runner: Runner, method: Method, serial: str, user: int, package: str, timeout: float = TIMEOUT) -> str:
    """Block one package for one user on one phone; return the outcome for the report
    (`uninstalled` / `disabled`, or `failed: <pm's message>`).

    Raise UnsafeIdentifierError or ValueError as block_arguments does, CommandError if adb cannot
    run or times out.
    """
    result = runner.run(PROGRAM, block_arguments(method, serial, user, package), timeout=timeout, check=False)
    said = " ".join((result.stdout + " " + result.stderr).split())
    done = result.returncode == 0 and _SUCCESS[method] in said
    outcome = ("uninstalled" if method == "uninstall" else "disabled") if done else f"failed: {said[:200] or result.returncode}"
    log_event(logger, logging.WARNING if done else logging.ERROR, "android.block", device=serial,
              app=package, user=user, method=method, outcome=outcome)
    return outcome
