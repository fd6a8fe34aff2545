"""A banned AppImage (and an /opt install) found through its desktop launcher is moved into
quarantine by `appban check --enforce`, listed by `appban quarantine list` and put back, with its
mode and content, by `appban quarantine restore ID`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))
from enforce_support import banlist_yaml, config_yaml, need_root  # noqa: E402

TOP = Path(__file__).parents[2]
APPIMAGE = b"#!/bin/sh\necho pretending to be WPS Office\n"


def appban(tmp: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp / "agent.yaml"
    config.write_text(config_yaml(root, tmp / "state"))
    return subprocess.run([sys.executable, "-m", "agent", *args, "--config", str(config)],
                          cwd=TOP, capture_output=True, text=True, timeout=120)


def launcher(path: Path, name: str, program: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[Desktop Entry]\nType=Application\nName={name}\nExec={program} %U\n")


def test_quarantined_appimage_and_opt_install_can_be_restored(tmp_path: Path) -> None:
    need_root()
    root = tmp_path / "sys"
    image = root / "home/alice/Applications/WPS-Office-x86_64.AppImage"
    image.parent.mkdir(parents=True)
    image.write_bytes(APPIMAGE)
    image.chmod(0o750)
    desktop = root / "home/alice/.local/share/applications/wps-office.desktop"
    launcher(desktop, "WPS Office", "/home/alice/Applications/WPS-Office-x86_64.AppImage")
    opt_program = root / "opt/tiktok-desktop/bin/tiktok"
    opt_program.parent.mkdir(parents=True)
    opt_program.write_bytes(b"#!/bin/sh\n")
    system_launcher = root / "usr/share/applications/tiktok.desktop"
    launcher(system_launcher, "TikTok", "/opt/tiktok-desktop/bin/tiktok")
    banlist = tmp_path / "list.yaml"
    banlist.write_text(banlist_yaml([{"id": "wps-office", "match": {"names": ["WPS Office*"]}},
                                     {"id": "tiktok", "match": {"names": ["TikTok"]}}]))

    done = appban(tmp_path, root, "check", "--banlist", str(banlist), "--enforce", "--format", "json")
    outcomes = {f["app"]["name"]: f["outcome"] for f in json.loads(done.stdout)["findings"]}
    assert outcomes == {"WPS Office": "quarantined", "TikTok": "quarantined"}, done.stderr
    assert not image.exists() and not desktop.exists()
    assert not (root / "opt/tiktok-desktop").exists()
    assert system_launcher.exists()  # a launcher in a package-owned folder is left to its package

    listed = appban(tmp_path, root, "quarantine", "list").stdout.splitlines()
    assert len(listed) == 2
    wps_id = next(line.split()[0] for line in listed if "entry wps-office" in line)
    assert "/home/alice/Applications/WPS-Office-x86_64.AppImage" in next(l for l in listed if wps_id in l)

    restored = appban(tmp_path, root, "quarantine", "restore", wps_id)
    assert restored.returncode == 0, restored.stderr
    assert image.read_bytes() == APPIMAGE and image.stat().st_mode & 0o777 == 0o750
    assert desktop.exists()
    assert len(appban(tmp_path, root, "quarantine", "list").stdout.splitlines()) == 1

    again = appban(tmp_path, root, "quarantine", "restore", wps_id)
    assert again.returncode == 2
    assert again.stderr.startswith(f"appban: no quarantine record '{wps_id}'")
