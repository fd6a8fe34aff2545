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


def image_config(root: Path, text: str = "state_dir: /var/lib/appban\n") -> Path:
    """Put the agent config into the image (where the unit will read it) and return its path there."""
    config = root / "etc/appban/agent.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    return config


def test_install_verify_uninstall_in_an_image(tmp_path: Path) -> None:
    image_config(tmp_path)
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
    image_config(tmp_path)
    result = appban("service", "install", "--root", str(tmp_path), "--dry-run", "--executable", APPBAN)
    assert result.returncode == 0, result.stderr
    assert f"write {tmp_path / UNIT_DIR / 'appban.service'}" in result.stdout
    assert f"run systemctl --root={tmp_path} enable appban.service" in result.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["etc"] and not (tmp_path / UNIT_DIR).exists()


def test_systemctl_failure_is_one_line(tmp_path: Path) -> None:
    image_config(tmp_path / "image", f"commands: {{systemctl: {shutil.which('false')}}}\n")
    result = appban("service", "install", "--root", str(tmp_path / "image"), "--executable", APPBAN)
    assert result.returncode == 2
    assert result.stderr.startswith("appban: service: systemctl") and result.stderr.count("\n") == 1


def test_the_unit_runs_the_named_config_with_paths_quoted(tmp_path: Path) -> None:
    program = tmp_path / "app ban/bin/appban"  # a real program: systemd-analyze checks it is there
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    image = tmp_path / "image"
    image_config(image).rename(image / "etc/appban/100% site.yaml")
    installed = appban("service", "install", "--root", str(image), "--executable", str(program),
                       "--config", "/etc/appban/100% site.yaml")
    assert installed.returncode == 0, installed.stderr
    unit = image / UNIT_DIR / "appban.service"
    assert f'ExecStart="{program}" run --config "/etc/appban/100%% site.yaml" --state-dir /var/lib/appban' \
        in unit.read_text()
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and "appban.service" not in verify.stderr, verify.stderr


def test_a_config_that_does_not_load_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    image_config(tmp_path, "shedule: {scan: 1h}\n")
    refused = appban("service", "install", "--root", str(tmp_path), "--executable", APPBAN)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "does not load" in refused.stderr and "shedule" in refused.stderr
    missing = appban("service", "install", "--root", str(tmp_path), "--executable", APPBAN,
                     "--config", "/etc/appban/none.yaml")
    assert missing.returncode == 2 and "none.yaml" in missing.stderr
    assert not (tmp_path / UNIT_DIR).exists()


def test_a_program_in_a_source_checkouts_virtualenv_needs_executable(tmp_path: Path) -> None:
    image_config(tmp_path)
    refused = appban("service", "install", "--root", str(tmp_path))  # APPBAN is this checkout's .venv/bin/appban
    assert refused.returncode == 2 and "source checkout" in refused.stderr and "--executable" in refused.stderr
    assert not (tmp_path / UNIT_DIR).exists()
