"""`appban check` and `appban inventory` as real processes: exit codes, output, the JSON report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import REPO, run_cli

SCHEMA = json.loads((REPO / "docs/schemas/report-v1.schema.json").read_text())

LIST = """
format: appban.banlist/v1
serial: 12
issued: 2026-01-01T00:00:00Z
entries:
  - id: wechat
    name: WeChat
    reason: Canada TBS, 2023-10-30
    references: [https://www.canada.ca/en/treasury-board-secretariat/news/2023/10/wechat-kaspersky.html]
    match:
      executables: [{exe}]
"""


@pytest.fixture()
def banned_process(tmp_path):
    """A real process running under a banned executable name (a copy of `sleep`)."""
    name = f"wechat-appban-{uuid.uuid4().hex[:8]}"  # unique: other suites may run this test at once
    exe = tmp_path / name
    shutil.copy(shutil.which("sleep"), exe)
    proc = subprocess.Popen([str(exe), "60"])
    time.sleep(0.2)
    yield name, proc
    proc.kill()
    proc.wait()


def write_list(tmp_path: Path, exe: str) -> Path:
    path = tmp_path / "list.yaml"
    path.write_text(LIST.format(exe=exe))
    return path


def test_running_banned_process_is_a_violation_in_a_valid_json_report(tmp_path, banned_process):
    name, proc = banned_process
    done = run_cli("check", "--banlist", str(write_list(tmp_path, name)), "--source", "process", "--format", "json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    jsonschema.validate(report, SCHEMA)
    (finding,) = [f for f in report["findings"] if f["app"]["path"].endswith(name)]
    assert finding["status"] == "violation"
    assert finding["entry"] == "wechat"
    assert finding["matched_by"] == f"executables:{name}"
    assert finding["app"]["extra"]["pid"] == str(proc.pid)
    assert report["compliant"] is False
    assert report["banlist"] == {"serial": 12, "source": str(tmp_path / "list.yaml"), "signed": False,
                                 "stale": False, "stale_since": None, "signer": None}


def test_violation_stays_exit_1_when_the_reader_has_gone(tmp_path, banned_process):
    """`appban check | grep -q …` closes the pipe early: the verdict must not turn into 0."""
    name, _ = banned_process
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "agent", "check", "--banlist", str(write_list(tmp_path, name)),
             "--source", "process", "--format", "json"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, cwd=REPO)
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == ""


def test_table_names_status_app_device_rule_and_reason_in_80_columns(tmp_path, banned_process):
    name, _ = banned_process
    done = run_cli("check", "--banlist", str(write_list(tmp_path, name)), "--source", "process")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    row = next(line for line in lines if line.startswith("violation"))
    assert "process" in row and "wechat" in row
    assert any("Canada TBS, 2023-10-30" in line for line in lines)
    assert lines[-1].startswith("NOT COMPLIANT: 1 violation")


def test_compliant_machine_exits_zero(tmp_path):
    done = run_cli("check", "--banlist", str(write_list(tmp_path, "no-such-program-xyz")), "--source", "process")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("COMPLIANT")


def test_bundled_list_is_used_without_any_config():
    done = run_cli("check", "--source", "process", "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    jsonschema.validate(report, SCHEMA)
    assert report["banlist"]["source"] == "bundled example"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--banlist", "/nonexistent/list.yaml"], "appban: ban list /nonexistent/list.yaml: cannot read"),
        (["--config", "/nonexistent/agent.yaml"], "appban: config /nonexistent/agent.yaml: cannot read"),
        (["--inventory", "/nonexistent/inv.json"], "appban: inventory /nonexistent/inv.json: cannot read"),
        (["--source", "nosuch"], "appban: unknown source 'nosuch'"),
        (["--inventory", "inv.json", "--root", "/mnt"],
         "appban: --root does not apply to saved inventories (--inventory)"),
        (["--inventory", "inv.json", "--source", "dpkg", "--group", "staff"],
         "appban: --source, --group do not apply to saved inventories (--inventory)"),
    ],
)
def test_no_verdict_is_exit_2_with_one_line(args, message):
    done = run_cli("check", *args)
    assert done.returncode == 2
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1
    assert done.stdout == ""


@pytest.mark.parametrize("command", ["check", "inventory"])
def test_nothing_read_is_exit_2_with_one_line_saying_why(tmp_path, command):
    absent = tmp_path / "absent"
    done = run_cli(command, "--root", str(absent))
    assert done.returncode == 2
    assert done.stderr == f"appban: no verdict: nothing could be read (inventory: root {absent}: not a folder)\n"


def test_invalid_list_and_config_name_the_entry_and_key(tmp_path):
    bad_list = tmp_path / "bad.yaml"
    bad_list.write_text(LIST.format(exe="x").replace("name: WeChat", "name: [WeChat]"))
    done = run_cli("check", "--banlist", str(bad_list))
    assert done.returncode == 2
    assert done.stderr == f"appban: ban list {bad_list}: entry 'wechat' (#1) field 'name': expected a string, got a list\n"
    bad_config = tmp_path / "agent.yaml"
    bad_config.write_text("device:\n  group: [staff]\n")
    done = run_cli("check", "--config", str(bad_config))
    assert done.returncode == 2
    assert done.stderr == f"appban: config {bad_config}: key 'device.group': unknown key (did you mean 'groups'?)\n"


def test_saved_inventory_is_checked_on_its_own_devices_with_group_scoping(tmp_path):
    inventory = {
        "format": "appban.inventory/v1",
        "devices": [{"id": "pc-7", "hostname": "pc-7", "kind": "host", "os": "Linux", "groups": ["staff"]}],
        "apps": [{"device": "pc-7", "source": "flatpak", "id": "com.tencent.WeChat", "name": "WeChat"}],
    }
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(inventory))
    done = run_cli("check", "--inventory", str(path), "--format", "json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [(f["device"], f["entry"]) for f in report["findings"]] == [("pc-7", "wechat")]
    assert report["devices"][0]["apps"] == 1


def test_group_flag_scopes_the_local_device(tmp_path, banned_process):
    name, _ = banned_process
    scoped = tmp_path / "scoped.yaml"
    scoped.write_text(LIST.format(exe=name) + "    applies_to: [staff]\n    advisory_for: [deputies]\n")
    statuses = {}
    for group in ("staff", "deputies", "press"):
        done = run_cli("check", "--banlist", str(scoped), "--source", "process", "--group", group, "--format", "json")
        statuses[group] = (done.returncode, [f["status"] for f in json.loads(done.stdout)["findings"]])
    assert statuses == {"staff": (1, ["violation"]), "deputies": (0, ["advisory"]), "press": (0, [])}


def test_inventory_round_trips_through_check(tmp_path):
    done = run_cli("inventory", "--source", "process", "--format", "json")
    assert done.returncode == 0, done.stderr
    saved = tmp_path / "inv.json"
    saved.write_text(done.stdout)
    assert json.loads(done.stdout)["format"] == "appban.inventory/v1"
    again = run_cli("check", "--inventory", str(saved), "--format", "json")
    assert again.returncode in (0, 1)
    assert json.loads(again.stdout)["devices"][0]["apps"] == len(json.loads(done.stdout)["apps"])


def test_inventory_table_counts_per_source():
    done = run_cli("inventory", "--source", "process")
    assert done.returncode == 0
    assert "process" in done.stdout
    assert done.stdout.splitlines()[-1].endswith("device(s)")
