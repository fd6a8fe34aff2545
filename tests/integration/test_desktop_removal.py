"""Removal hooks run for real where they can here: the Windows uninstall executor through the
runner (with a stand-in msiexec that records its arguments), the macOS quarantine on real bundles."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.enforce.macos import MANIFEST, QuarantineRefused, quarantine_bundle
from agent.enforce.windows import uninstall
from agent.model import App
from agent.runner import CommandError, Runner
from tests.volumes import app_bundle, info

CODE = "{6D3B1A5C-0E2F-4C7A-9B1D-3E5F7A9C1B2D}"
NOW = datetime(2026, 11, 22, 17, 30, tzinfo=timezone.utc)


def stand_in(tmp_path: Path, name: str, exit_code: int = 0) -> tuple[Path, Path]:
    """Write an executable that appends its arguments (one JSON line per run) to a log."""
    log = tmp_path / f"{name}.log"
    script = tmp_path / name
    script.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\nsys.exit({exit_code})\n")
    script.chmod(0o755)
    return script, log


def test_msi_uninstall_runs_msiexec_silently_through_the_runner(tmp_path: Path) -> None:
    script, log = stand_in(tmp_path, "msiexec")
    app = App(source="windows", id=CODE, extra=(("kind", "arp"), ("msi_product_code", CODE)))
    uninstall(app, Runner(commands={"msiexec.exe": str(script)}))
    assert [json.loads(line) for line in log.read_text().splitlines()] == [["/x", CODE, "/qn", "/norestart"]]


def test_failed_uninstaller_is_a_command_error(tmp_path: Path) -> None:
    script, _log = stand_in(tmp_path, "powershell", exit_code=3)
    app = App(source="windows", id="BytedancePte.Ltd.TikTok", extra=(
        ("kind", "msix"), ("package_full_name", "BytedancePte.Ltd.TikTok_1.0.17.0_x64__6yccndn6064se")))
    with pytest.raises(CommandError, match="exit status 3"):
        uninstall(app, Runner(commands={"powershell.exe": str(script)}))


def test_quarantine_moves_the_bundle_and_records_it(tmp_path: Path) -> None:
    bundle = app_bundle(tmp_path / "Applications", "WeChat", info("com.tencent.xinWeChat", "WeChat", "3.8.10", "28632"))
    folder = tmp_path / "quarantine"
    app = App(source="macos", id="com.tencent.xinWeChat", name="WeChat", version="3.8.10", user="alice")
    target = quarantine_bundle(bundle, folder, app, NOW)
    assert not bundle.exists()
    assert target == folder / "20261122T173000Z-WeChat.app"
    assert (target / "Contents" / "Info.plist").is_file()
    records = [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]
    assert [r["state"] for r in records] == ["moving", "moved"]
    assert records[-1]["from"] == str(bundle) and records[-1]["id"] == "com.tencent.xinWeChat"


def test_quarantine_refuses_what_is_not_a_bundle(tmp_path: Path) -> None:
    app = App(source="macos", id="x")
    plain = tmp_path / "Documents"
    plain.mkdir()
    with pytest.raises(QuarantineRefused, match="not an .app bundle"):
        quarantine_bundle(plain, tmp_path / "q", app, NOW)
    bundle = app_bundle(tmp_path, "Real", info("com.example.real", "Real", "1", "1"))
    link = tmp_path / "Link.app"
    link.symlink_to(bundle)
    with pytest.raises(QuarantineRefused):
        quarantine_bundle(link, tmp_path / "q", app, NOW)
    with pytest.raises(QuarantineRefused, match="inside it"):
        quarantine_bundle(bundle, bundle / "Contents" / "q", app, NOW)
    assert bundle.is_dir() and not (tmp_path / "q").exists()
