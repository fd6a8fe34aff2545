"""macOS packaging: the LaunchDaemon plist read with plistlib (what launchd reads), and the .pkg
postinstall run for real in a throwaway target volume (the macOS Installer passes it as $3)."""

from __future__ import annotations

import plistlib
import subprocess
from pathlib import Path

from tests.conftest import REPO

PLIST = REPO / "packaging/macos/org.appban.agent.plist"
POSTINSTALL = REPO / "packaging/macos/postinstall"
SUPPORT = "Library/Application Support/appban"


def test_the_daemon_restarts_after_a_crash_logs_to_a_file_and_names_its_config() -> None:
    daemon = plistlib.loads(PLIST.read_bytes())
    assert daemon["Label"] == "org.appban.agent" == PLIST.stem
    assert daemon["KeepAlive"] == {"SuccessfulExit": False} and daemon["RunAtLoad"] is True
    assert daemon["StandardOutPath"] == daemon["StandardErrorPath"] == "/Library/Logs/appban/appban.log"
    arguments = daemon["ProgramArguments"]
    assert arguments[1:3] == ["-I", "/Library/appban/appban.py"]
    assert arguments[arguments.index("run"):] == [
        "run", "--config", f"/{SUPPORT}/agent.yaml", "--state-dir", f"/{SUPPORT}/state"]
    assert arguments[arguments.index("--log-format") + 1] == "json", "log lines carry their own timestamps"
    assert daemon["ExitTimeOut"] >= 60, "time to finish the job in progress after SIGTERM"


def install_payload(volume: Path) -> None:
    (volume / "Library/appban").mkdir(parents=True)
    (volume / "Library/appban/agent.example.yaml").write_bytes((REPO / "config/agent.example.yaml").read_bytes())


def postinstall(volume: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", str(POSTINSTALL), "appban.pkg", "/", str(volume)], capture_output=True,
                          text=True, timeout=60)


def test_postinstall_creates_the_config_once_and_keeps_the_administrators(tmp_path: Path) -> None:
    install_payload(tmp_path)
    done = postinstall(tmp_path)
    assert done.returncode == 0, done.stderr
    config = tmp_path / SUPPORT / "agent.yaml"
    assert config.read_bytes() == (REPO / "config/agent.example.yaml").read_bytes()
    assert config.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / SUPPORT / "state").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "Library/Logs/appban").is_dir()
    config.write_text("state_dir: /somewhere/else\n")
    assert postinstall(tmp_path).returncode == 0
    assert config.read_text() == "state_dir: /somewhere/else\n", "an upgrade keeps the edited config"
