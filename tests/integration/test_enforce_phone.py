"""Blocking on a phone attached to the gateway: `appban` plans it and runs `adb … pm` through the
runner. No phone exists here, so `adb` is a stand-in that records its arguments and answers as
`pm` does (`Success` on stdout, exit 0 — AOSP PackageManagerShellCommand.runUninstall)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from agent.config import Config, EnforcementConfig, GatewayConfig
from agent.enforce.act import enforce
from agent.model import App, Device, Entry, Finding
from agent.runner import Runner
from tests.stand_ins import stand_in

SERIAL = "R58M31ABCDE"


def run(tmp_path: Path, answer: str, method: str = "uninstall"):
    adb = stand_in(tmp_path / "adb", stdout=answer + "\n")
    config = Config(state_dir=str(tmp_path / "state"),
                    enforcement=EnforcementConfig(mode="block", root=str(tmp_path / "root"), notify=False),
                    gateway=GatewayConfig(android_block=method), commands={"adb": str(adb)})
    app = App(source="android", id="com.zhiliaoapp.musically", name="TikTok", device=SERIAL, user="10")
    item = Finding("violation", Entry(id="tiktok", name="TikTok", action="block"), app, SERIAL, "android:x")
    done = enforce([item], config, Device(id="gateway-1"), Runner(commands=config.commands), io.StringIO())
    return done.findings[0].outcome, adb.calls()


def test_the_work_profile_copy_is_uninstalled_for_that_user_only(tmp_path):
    outcome, calls = run(tmp_path, "Success")
    assert outcome == "removed"
    assert calls == [["-s", SERIAL, "shell", "pm", "uninstall", "-k", "--user", "10", "com.zhiliaoapp.musically"]]
    audit = (tmp_path / "state" / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in audit][-1] == "done"


def test_disable_instead_when_the_config_says_so(tmp_path):
    outcome, calls = run(tmp_path, "Package com.zhiliaoapp.musically new state: disabled-user", "disable")
    assert outcome == "removed"
    assert calls[0][3:] == ["pm", "disable-user", "--user", "10", "com.zhiliaoapp.musically"]


def test_pm_failure_is_reported_even_with_exit_0(tmp_path):
    outcome, _ = run(tmp_path, "Failure [DELETE_FAILED_INTERNAL_ERROR]")
    assert outcome.startswith("failed: ") and "DELETE_FAILED_INTERNAL_ERROR" in outcome
