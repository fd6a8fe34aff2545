"""Inputs that give no verdict (issue 11, items 6 and 12): exit 2 with one line, never 0 and
never 1, which means "violation" and nothing else."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from agent import cli
from agent.commands import check
from tests.conftest import run_cli

CSV = "Device name,Device ID,App name,App version\nphone,d1,TikTok,35.1\n"


def _one_line_no_verdict(done, starts: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.startswith(starts), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["check", "inventory"])
def test_an_empty_root_is_no_verdict_not_compliant(tmp_path: Path, command: str) -> None:
    empty = tmp_path / "mnt"
    empty.mkdir()
    done = run_cli(command, "--root", str(empty))
    _one_line_no_verdict(done, f"appban: no verdict: nothing could be read (inventory: nothing to read at {empty}")
    assert "COMPLIANT" not in done.stdout.replace("NO VERDICT", "")


def test_a_root_with_only_empty_home_folders_is_no_verdict(tmp_path: Path) -> None:
    (tmp_path / "home" / "alice").mkdir(parents=True)
    (tmp_path / "root").mkdir()
    _one_line_no_verdict(run_cli("check", "--root", str(tmp_path)), "appban: no verdict: nothing could be read")


def test_a_root_with_an_empty_launcher_folder_still_gets_a_verdict(tmp_path: Path) -> None:
    (tmp_path / "usr" / "share" / "applications").mkdir(parents=True)
    done = run_cli("check", "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("COMPLIANT")


def test_deeply_nested_json_inventory_is_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"format": "appban.inventory/v1", "apps": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _one_line_no_verdict(run_cli("check", "--inventory", str(deep)), f"appban: inventory {deep}: not usable JSON")


def _zip_with(path: Path, patch: dict[int, bytes]) -> Path:
    """Write a ZIP holding one CSV, then patch bytes of its local and central headers (the
    offsets are those of PKWARE's APPNOTE.TXT 4.3.7 and 4.3.12, relative to each signature)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("export.csv", CSV)
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    for offset, value in patch.items():
        data[offset:offset + len(value)] = value  # local file header
        data[central + offset + 2:central + offset + 2 + len(value)] = value  # central header: 2 bytes later
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(("patch", "what"), [
    ({8: (97).to_bytes(2, "little")}, "compression method"),  # method 97 (WavPack): zipfile has none
    ({6: (1).to_bytes(2, "little")}, "encrypted"),  # general purpose flag bit 0: a password is needed
])
def test_unreadable_zip_exports_are_one_line(tmp_path: Path, patch: dict[int, bytes], what: str) -> None:
    export = _zip_with(tmp_path / "export.zip", patch)
    done = run_cli("check", "--inventory", str(export))
    _one_line_no_verdict(done, f"appban: inventory {export}: cannot read the ZIP:")
    assert what in done.stderr.lower()


def test_any_unexpected_error_is_exit_2_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def broken(args: object) -> int:
        raise RecursionError("maximum recursion depth exceeded\nwhile calling a Python object")

    monkeypatch.setattr(check, "run", broken)
    assert cli.main(["check"]) == 2
    err = capsys.readouterr().err
    assert err == "appban: internal error: RecursionError: maximum recursion depth exceeded while calling a Python object\n"


def _saved(path: Path, devices: list[dict], apps: list[dict]) -> str:
    path.write_text(json.dumps({"format": "appban.inventory/v1", "devices": devices, "apps": apps}))
    return str(path)


def test_one_device_in_several_inventory_files_is_one_device_with_its_findings_once(tmp_path: Path) -> None:
    wechat = {"device": "pc-7", "source": "flatpak", "id": "com.tencent.WeChat", "name": "WeChat"}
    tiktok = {"device": "pc-7", "source": "snap", "id": "tiktok", "name": "TikTok"}
    twin = {"device": "pc-8", "source": "flatpak", "id": "com.tencent.WeChat", "name": "WeChat"}
    first = _saved(tmp_path / "a.json", [{"id": "pc-7", "hostname": "pc-7", "os": "Linux", "groups": ["staff"]}],
                   [wechat])
    second = _saved(tmp_path / "b.json", [], [wechat, tiktok])  # pc-7 again, not described here
    other = _saved(tmp_path / "c.json", [{"id": "pc-8", "hostname": "pc-7"}], [twin])  # same name, other device
    done = run_cli("check", "--inventory", first, "--inventory", second, "--inventory", other, "--format", "json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert sorted((d["id"], d["hostname"], d["apps"]) for d in report["devices"]) == [("pc-7", "pc-7", 2), ("pc-8", "pc-7", 1)]
    assert sorted(f["device"] for f in report["findings"] if f["entry"] == "wechat") == ["pc-7", "pc-8"]
