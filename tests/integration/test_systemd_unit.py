"""The shipped unit passes `systemd-analyze verify`, and `appban service install|uninstall --root`
writes, enables (real `systemctl --root`), disables and removes it in a system image."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.service_support import APPBAN

UNIT_DIR = Path("etc/systemd/system")


@pytest.fixture(autouse=True)
def systemd_tools() -> None:
    require_tool("systemctl")
    require_tool("systemd-analyze")


def appban(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([APPBAN, *args], capture_output=True, text=True, timeout=60)


def test_install_verify_uninstall_in_an_image(tmp_path: Path) -> None:
    installed = appban("service", "install", "--root", str(tmp_path), "--report-only", "--executable", APPBAN)
    assert installed.returncode == 0, installed.stderr
    unit = tmp_path / UNIT_DIR / "appban.service"
    assert f"ExecStart={APPBAN} run --config /etc/appban/agent.yaml" in unit.read_text()
    assert (tmp_path / UNIT_DIR / "appban.service.d" / "report-only.conf").is_file()
    wants = tmp_path / UNIT_DIR / "multi-user.target.wants" / "appban.service"
    assert wants.is_symlink()

    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr
    assert "appban.service" not in verify.stderr

    removed = appban("service", "uninstall", "--root", str(tmp_path))
    assert removed.returncode == 0, removed.stderr
    assert not unit.exists() and not wants.exists() and not (tmp_path / UNIT_DIR / "appban.service.d").exists()


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    result = appban("service", "install", "--root", str(tmp_path), "--dry-run")
    assert result.returncode == 0
    assert f"write {tmp_path / UNIT_DIR / 'appban.service'}" in result.stdout
    assert f"run systemctl --root={tmp_path} enable appban.service" in result.stdout
    assert not any(tmp_path.iterdir())


def test_systemctl_failure_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(f"commands: {{systemctl: {shutil.which('false')}}}\n")
    result = appban("service", "install", "--root", str(tmp_path / "image"), "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.startswith("appban: service: systemctl") and result.stderr.count("\n") == 1
