"""`appban check` as a subprocess: MDM exports with the Québec group rules, a bad export, and a
gateway run against stand-in phone tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.phones import PIXEL2, SAMSUNG, android_replies, install

MDM = REPO / "tests" / "fixtures" / "mdm"

QUEBEC = """
gateway:
  default_groups: [staff]
  groups:
    - groups: [ministers]
      names: ["QC-MIN-*"]
    - groups: [assembly-members]
      attributes: {email: [g.tremblay@assnat.qc.ca]}
    - groups: [assembly-staff]
      attributes: {email_domain: [assnat.qc.ca]}
"""


@pytest.fixture()
def quebec(tmp_path: Path) -> Path:
    config = tmp_path / "agent.yaml"
    config.write_text(QUEBEC, encoding="utf-8")
    return config


@pytest.mark.parametrize("export", ["intune-appinvrawdata.zip", "intune-appinvrawdata.csv"])
def test_intune_export_checked_per_phone_and_group(quebec: Path, export: str) -> None:
    done = run_cli("check", "--config", str(quebec), "--inventory", str(MDM / export), "--format", "json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    names = {d["id"]: d["hostname"] for d in report["devices"]}
    seen = {(names[f["device"]], f["entry"], f["status"]) for f in report["findings"] if "TikTok" in f["name"]}
    assert seen == {
        ("QC-MIN-07", "tiktok", "violation"),
        ("AN-DEP-112", "tiktok", "exempt"), ("AN-DEP-112", "tiktok-quebec-assembly", "advisory"),
        ("AN-ADM-031", "tiktok", "violation"), ("AN-ADM-031", "tiktok-quebec-assembly", "violation"),
    }
    groups = {d["hostname"]: d["groups"] for d in report["devices"]}
    assert groups == {"QC-MIN-07": ["ministers"], "AN-DEP-112": ["assembly-members"], "AN-ADM-031": ["assembly-staff"]}
    assert any("company-owned" in note for note in report["notes"])


def test_table_has_a_heading_per_phone(quebec: Path) -> None:
    done = run_cli("check", "--config", str(quebec), "--inventory", str(MDM / "intune-appinvrawdata.csv"))
    assert done.returncode == 1
    headings = [line for line in done.stdout.splitlines() if line.startswith("== ")]
    assert headings[1] == "== ios · 6b1c0f5e-1d2a-4c3b-9e8f-0a1b2c3d4e5f · QC-MIN-07 · iOS 17.1.2 · groups:"
    assert "note: Intune's app inventory lists unmanaged" in done.stdout


def test_export_missing_a_column_is_one_line_and_exit_2() -> None:
    done = run_cli("check", "--inventory", str(MDM / "intune-missing-deviceid.csv"))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"appban: inventory {MDM / 'intune-missing-deviceid.csv'}: Intune AppInvRawData CSV lacks the column DeviceId"]


def test_gateway_check_of_attached_phones(tmp_path: Path) -> None:
    adb = install(tmp_path, "adb", android_replies(stuck_for=30), tmp_path / "calls.log")
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"commands: {{adb: {adb}}}\ngateway: {{enabled: true, timeout: 1.0, default_groups: [staff],\n"
        "  groups: [{groups: [ministers], names: ['QC-MIN-*']}]}\n",
        encoding="utf-8")
    done = run_cli("check", "--config", str(config), "--source", "android", "--format", "json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    tiktok = {(f["device"], f["app"]["id"], f["app"]["user"]) for f in report["findings"] if f["entry"] == "tiktok"}
    assert (SAMSUNG, "com.ss.android.ugc.trill", "10") in tiktok  # the work profile
    assert (SAMSUNG, "com.zhiliaoapp.musically", "0") in tiktok
    phones = {d["id"]: d for d in report["devices"] if d["kind"] == "android"}
    assert phones[SAMSUNG]["groups"] == ["ministers"] and phones[SAMSUNG]["apps"] == 8
    assert phones[PIXEL2]["groups"] == ["staff"]
    assert report["complete"] is False
    assert {e["device"] for e in report["errors"]} == {"9A281FFAZ003KP", "192.168.1.20:5555", "HT7A1B234567"}
