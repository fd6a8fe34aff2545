"""The phone collectors against the real Debian tools (adb, libimobiledevice) on a machine with
no phone attached: the formats of an empty listing and the ideviceinstaller generation detection
come from the installed tools themselves, not from recordings."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from agent.config import Config, GatewayConfig
from agent.inventory.android import AndroidCollector
from agent.inventory.base import Context
from agent.inventory.ios import INSTALLER, IosCollector, list_arguments
from agent.runner import Runner

from tests.conftest import require_tool


@pytest.fixture(autouse=True)
def _tools() -> None:
    for tool in ("adb", "idevice_id", "ideviceinfo", "ideviceinstaller"):
        require_tool(tool)


def _context(env: dict[str, str] | None = None) -> Context:
    runner = Runner(env=env or {})
    return Context(runner=runner, config=Config(gateway=GatewayConfig(enabled=True, timeout=30.0)))


@pytest.fixture()
def adb_port():
    """A private adb server on a free loopback port, killed afterwards (never the user's 5037)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": port}
    # Start the server first: adb's client gives a server it forks only a few seconds to answer,
    # which a loaded machine can miss ("cannot connect to daemon"). The test is about what the
    # collector reports with no phone, not about how fast adb starts.
    deadline = time.monotonic() + 120
    while subprocess.run(["adb", "start-server"], env=env, capture_output=True, timeout=120,
                         check=False).returncode != 0:
        assert time.monotonic() < deadline, "adb start-server kept failing"
        time.sleep(1)
    yield port
    subprocess.run(["adb", "kill-server"], env=env, capture_output=True, timeout=30, check=False)


def test_real_adb_with_no_phone_lists_nothing_and_reports_nothing(adb_port: str) -> None:
    result = AndroidCollector().collect(_context({"ANDROID_ADB_SERVER_PORT": adb_port}))
    assert (result.devices, result.apps, result.errors) == ([], [], [])


def test_real_libimobiledevice_with_no_iphone() -> None:
    result = IosCollector().collect(_context())
    assert (result.devices, result.apps, result.errors) == ([], [], [])


def test_installed_ideviceinstaller_generation_is_detected() -> None:
    version = subprocess.run([INSTALLER, "--version"], capture_output=True, text=True, timeout=30).stdout.split()[-1]
    usage = subprocess.run([INSTALLER, "--help"], capture_output=True, text=True, timeout=30)
    expected = ["list", "--xml"] if tuple(map(int, version.split(".")[:2])) >= (1, 2) else ["-l", "-o", "xml"]
    assert list_arguments(usage.stdout + usage.stderr, "UDID") == ["-u", "UDID", *expected]
