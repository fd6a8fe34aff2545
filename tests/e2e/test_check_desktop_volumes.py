"""`appban check --root DIR --source windows|macos` as a subprocess, against mounted-volume
layouts of real hives and real bundles, with the bundled example ban list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hives import hivexregedit
from tests.volumes import QQ_CODE, macos_volume, windows_volume

TOP = Path(__file__).resolve().parents[2]
TIMEOUT = 120


def check(root: Path, source: str) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "agent", "check", "--root", str(root), "--source", source, "--format", "json"],
        cwd=TOP, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
    )
    return done.returncode, json.loads(done.stdout)


def found(report: dict) -> set[tuple[str, str, str]]:
    return {(f["entry"], f["app"]["id"], f["app"]["user"]) for f in report["findings"] if f["status"] == "violation"}


def test_windows_volume_has_wechat_tiktok_capcut(tmp_path: Path) -> None:
    hivexregedit()
    code, report = check(windows_volume(tmp_path), "windows")
    assert code == 1
    assert {("wechat", "WeChat", ""), ("tiktok", "BytedancePte.Ltd.TikTok", "anna"),
            ("capcut", "CapCut", "anna"), ("qq", QQ_CODE, "")} <= found(report)
    assert report["complete"] is False  # the damaged hives are reported, not hidden
    assert any("/Users/cut/NTUSER.DAT" in e["message"] for e in report["errors"])


def test_macos_volume_has_wechat_and_capcut(tmp_path: Path) -> None:
    code, report = check(macos_volume(tmp_path), "macos")
    assert code == 1
    assert {("wechat", "com.tencent.xinWeChat", ""), ("capcut", "com.lemon.lvoverseas", "alice"),
            ("wechat", "wechat", "")} <= found(report)
