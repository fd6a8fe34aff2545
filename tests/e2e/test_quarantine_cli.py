"""A banned AppImage found by the scan in its user's home (and owned by that user) is moved into
quarantine by `appban check --enforce`, listed by `appban quarantine list` and put back, with its
mode, owner and content, by `appban quarantine restore ID`. An /opt install known only by its
launcher is reported, not moved: a launcher is evidence, not authority."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))
from enforce_support import banlist_yaml, config_yaml, need_root  # noqa: E402

TOP = Path(__file__).parents[2]
APPIMAGE = bytes(bytearray(b"\x7fELF\x02\x01\x01\x00AI\x02") + bytes(64))
"""The AppImage magic (type 2) at offset 8, as the AppImage specification's "Magic bytes" give it."""
ALICE = 61011


def appban(tmp: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp / "agent.yaml"
    config.write_text(config_yaml(root, tmp / "state").replace("[dpkg, desktop]", "[dpkg, desktop, appimage]"))
    return subprocess.run([sys.executable, "-m", "agent", *args, "--config", str(config)],
                          cwd=TOP, capture_output=True, text=True, timeout=120)


def launcher(path: Path, name: str, program: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[Desktop Entry]\nType=Application\nName={name}\nExec={program} %U\n")


def test_quarantined_appimage_can_be_restored_and_an_opt_launcher_is_only_reported(tmp_path: Path) -> None:
    need_root()
    root = tmp_path / "sys"
    image = root / "home/alice/Applications/WPS-Office-x86_64.AppImage"
    image.parent.mkdir(parents=True)
    image.write_bytes(APPIMAGE)
    image.chmod(0o750)
    for path in (root / "home/alice", image.parent, image):
        os.chown(path, ALICE, ALICE)
    desktop = root / "home/alice/.local/share/applications/wps-office.desktop"
    launcher(desktop, "WPS Office", "/home/alice/Applications/WPS-Office-x86_64.AppImage")
    opt_program = root / "opt/tiktok-desktop/bin/tiktok"
    opt_program.parent.mkdir(parents=True)
    opt_program.write_bytes(b"#!/bin/sh\n")
    system_launcher = root / "usr/share/applications/tiktok.desktop"
    launcher(system_launcher, "TikTok", "/opt/tiktok-desktop/bin/tiktok")
    banlist = tmp_path / "list.yaml"
    banlist.write_text(banlist_yaml([{"id": "wps-office", "match": {"names": ["WPS Office*", "WPS-Office*"]}},
                                     {"id": "tiktok", "match": {"names": ["TikTok"]}}]))

    done = appban(tmp_path, root, "check", "--banlist", str(banlist), "--enforce", "--format", "json")
    outcomes = {(f["app"]["source"], f["app"]["name"]): f["outcome"] for f in json.loads(done.stdout)["findings"]}
    assert outcomes.pop(("appimage", "WPS-Office")) == "quarantined", (outcomes, done.stderr)
    assert sorted(outcomes) == [("desktop", "TikTok"), ("desktop", "WPS Office")]
    assert all(o.startswith("refused: a launcher is evidence for the report") for o in outcomes.values())
    assert not image.exists() and desktop.exists()
    assert opt_program.exists() and system_launcher.exists()

    listed = appban(tmp_path, root, "quarantine", "list").stdout.splitlines()
    assert len(listed) == 1
    wps_id = next(line.split()[0] for line in listed if "entry wps-office" in line)
    assert "/home/alice/Applications/WPS-Office-x86_64.AppImage" in next(l for l in listed if wps_id in l)

    restored = appban(tmp_path, root, "quarantine", "restore", wps_id)
    assert restored.returncode == 0, restored.stderr
    assert image.read_bytes() == APPIMAGE and image.stat().st_mode & 0o777 == 0o750
    assert (image.stat().st_uid, image.stat().st_gid) == (ALICE, ALICE)
    assert appban(tmp_path, root, "quarantine", "list").stdout.splitlines() == ["quarantine is empty"]

    again = appban(tmp_path, root, "quarantine", "restore", wps_id)
    assert again.returncode == 2
    assert again.stderr.startswith(f"appban: no quarantine record '{wps_id}'")
