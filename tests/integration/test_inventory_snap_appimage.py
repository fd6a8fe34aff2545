"""The snap and AppImage collectors on trees laid out as snapd and AppImage tools leave them.

snapd cannot run here (it needs systemd and the store), so its state is laid out as snapd 2.6x
writes it (format from canonical/snapd: overlord/snapstate/snapstate.go SnapState,
snap/info.go SideInfo, asserts/fsbackstore.go for assertions). The snap files are real squashfs
images made by mksquashfs, read back with the real unsquashfs when a snap is not mounted.
AppImages are real ELF executables (a copy of /bin/true) carrying the AppImage magic and a real
squashfs payload appended, as appimagetool produces them; the collector reads the embedded
.desktop file with the real unsquashfs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from agent.inventory import collect
from agent.inventory import appimage
from agent.inventory.appimage import AppImageCollector
from agent.inventory.snap import SnapCollector
from tests.conftest import require_tool
from tests.linux_roots import context, run

ACCOUNT_ID = "Xp7AqLxkTPn5k2bYVBvMMkRZ3p9ZZqUX"
SNAP_IDS = {"telegram-desktop": "XXzVIXswXKHqlUATPxGCmUSRPyzEdlAn", "zoom-client": "1zE4ksGnXwLTyNrXwKiTvP8nFPIJKbvR"}


def _snap_yaml(name: str, version: str) -> str:
    return f"name: {name}\nversion: '{version}'\nsummary: test\nbase: core22\napps:\n  {name}:\n    command: bin/{name}\n"


def _assertion(headers: dict[str, str]) -> str:
    body = "".join(f"{k}: {v}\n" for k, v in headers.items())
    return body + "sign-key-sha3-384: BWDEoaqyr25nF5SNCvEv2v7QnM9QsfCc0PBMYD_i2NGSQ32EF2d4D0hqUel3m8ul\n\nAcLBUgQAAQoABgUCXm\n"


@pytest.fixture()
def snap_root(tmp_path: Path) -> Path:
    """telegram-desktop mounted at /snap (revision 5000 current, 4900 kept); zoom-client not
    mounted (an image), so only its blob in /var/lib/snapd/snaps holds snap.yaml."""
    require_tool("mksquashfs")
    require_tool("unsquashfs")
    root = tmp_path / "root"
    mount = root / "snap/telegram-desktop/5000/meta"
    mount.mkdir(parents=True)
    (mount / "snap.yaml").write_text(_snap_yaml("telegram-desktop", "4.14.9"))
    (root / "snap/telegram-desktop/current").symlink_to("5000")
    blobs = root / "var/lib/snapd/snaps"
    blobs.mkdir(parents=True)
    payload = tmp_path / "zoom" / "meta"
    payload.mkdir(parents=True)
    (payload / "snap.yaml").write_text(_snap_yaml("zoom-client", "6.0.2.4680"))
    run("mksquashfs", tmp_path / "zoom", blobs / "zoom-client_225.snap", "-noappend", "-quiet", "-all-root")
    snaps = {
        "telegram-desktop": {"type": "app", "active": True, "current": "5000", "tracking-channel": "latest/stable",
                             "sequence": [{"name": "telegram-desktop", "snap-id": SNAP_IDS["telegram-desktop"],
                                           "revision": r, "channel": "stable"} for r in ("4900", "5000")]},
        "zoom-client": {"type": "app", "active": True, "current": "225",
                        "sequence": [{"name": "zoom-client", "snap-id": SNAP_IDS["zoom-client"], "revision": "225"}]},
    }
    state = {"data": {"snaps": snaps, "auth": {}}, "changes": {}, "tasks": {}, "last-change-id": 0}
    (root / "var/lib/snapd/state.json").write_text(json.dumps(state))
    asserts = root / "var/lib/snapd/assertions/asserts-v0"
    for name, snap_id in SNAP_IDS.items():
        folder = asserts / "snap-declaration/16" / snap_id
        folder.mkdir(parents=True)
        (folder / "active").write_text(_assertion({
            "type": "snap-declaration", "authority-id": "canonical", "series": "16", "snap-id": snap_id,
            "publisher-id": ACCOUNT_ID, "snap-name": name, "timestamp": "2024-01-01T00:00:00Z"}))
    (asserts / "account" / ACCOUNT_ID).mkdir(parents=True)
    (asserts / "account" / ACCOUNT_ID / "active").write_text(_assertion({
        "type": "account", "authority-id": "canonical", "account-id": ACCOUNT_ID,
        "display-name": "Telegram FZ-LLC", "username": "telegram.desktop", "validation": "verified"}))
    desktop = root / "var/lib/snapd/desktop/applications"
    desktop.mkdir(parents=True)
    (desktop / "telegram-desktop_telegram-desktop.desktop").write_text(
        "[Desktop Entry]\nType=Application\nName=Telegram Desktop\nExec=env BAMF_DESKTOP_FILE_HINT=x "
        "/snap/bin/telegram-desktop -- %u\nX-SnapInstanceName=telegram-desktop\n")
    return root


def test_snaps_from_state_mounts_and_blobs(snap_root: Path) -> None:
    apps = {a.id: a for a in SnapCollector().collect(context(snap_root)).apps}
    assert sorted(apps) == ["telegram-desktop", "zoom-client"]
    telegram, zoom = apps["telegram-desktop"], apps["zoom-client"]
    assert (telegram.version, telegram.extra_value("revision"), telegram.publisher) == ("4.14.9", "5000", "telegram.desktop")
    assert telegram.extra_value("channel") == "latest/stable"
    assert (zoom.version, zoom.extra_value("revision"), zoom.path) == ("6.0.2.4680", "225", "/snap/zoom-client/225")


def test_snap_launcher_folds_into_its_snap(snap_root: Path) -> None:
    inventory = collect(context(snap_root), ["snap", "desktop"])
    assert not inventory.errors
    assert sorted(a.source for a in inventory.apps) == ["snap", "snap"]
    assert next(a for a in inventory.apps if a.id == "telegram-desktop").name == "Telegram Desktop"


def test_truncated_snap_state_is_one_error_and_mounted_snaps_survive(snap_root: Path) -> None:
    state = snap_root / "var/lib/snapd/state.json"
    state.write_bytes(state.read_bytes()[:200])
    inventory = collect(context(snap_root), ["snap"])
    assert [e.collector for e in inventory.errors] == ["snap"]
    assert "unreadable snapd state" in inventory.errors[0].message
    assert [(a.id, a.version) for a in inventory.apps] == [("telegram-desktop", "4.14.9")]


def _appimage(path: Path, payload: Path) -> None:
    """Write an AppImage as appimagetool does: ELF runtime with 'AI\\x02' at offset 8, then squashfs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    elf = bytearray(Path(shutil.which("true") or "/bin/true").read_bytes())
    elf[8:11] = b"AI\x02"
    squash = payload.with_suffix(".squashfs")
    run("mksquashfs", payload, squash, "-noappend", "-quiet", "-all-root")
    path.write_bytes(bytes(elf) + squash.read_bytes())
    path.chmod(0o755)


def test_appimages_in_home_and_opt_with_their_users_and_launchers(tmp_path: Path) -> None:
    require_tool("mksquashfs")
    require_tool("unsquashfs")
    root = tmp_path / "root"
    payload = tmp_path / "AppDir"
    payload.mkdir()
    (payload / "AppRun").write_text("#!/bin/sh\n")
    signal = tmp_path / "SignalAppDir"
    shutil.copytree(payload, signal)
    (signal / "signal-desktop.desktop").write_text(
        "[Desktop Entry]\nType=Application\nName=Signal\nExec=AppRun\nX-AppImage-Version=7.2.1\n")
    _appimage(root / "home/alice/Applications/signal-desktop.AppImage", signal)
    _appimage(root / "home/bob/Downloads/Cursor-0.45.AppImage", payload)
    _appimage(root / "opt/tools/balenaEtcher-1.18.11-x64/balenaEtcher.AppImage", payload)
    (root / "home/alice/bin").mkdir(parents=True)
    shutil.copy(shutil.which("true") or "/bin/true", root / "home/alice/bin/plain-elf")
    (root / "home/alice/Downloads").mkdir(parents=True)
    (root / "home/alice/Downloads/notes.txt").write_text("AI")
    launchers = root / "home/alice/.local/share/applications"
    launchers.mkdir(parents=True)
    (launchers / "appimagekit-signal.desktop").write_text(
        "[Desktop Entry]\nType=Application\nName=Signal\n"
        "Exec=/home/alice/Applications/signal-desktop.AppImage --no-sandbox %U\n")
    apps = AppImageCollector().collect(context(root)).apps
    assert sorted((a.user, a.name, a.version, a.path) for a in apps) == [
        ("", "balenaEtcher", "", "/opt/tools/balenaEtcher-1.18.11-x64/balenaEtcher.AppImage"),
        ("alice", "Signal", "7.2.1", "/home/alice/Applications/signal-desktop.AppImage"),
        ("bob", "Cursor", "0.45", "/home/bob/Downloads/Cursor-0.45.AppImage"),
    ]
    inventory = collect(context(root), ["appimage", "desktop"])
    assert sorted(a.source for a in inventory.apps) == ["appimage"] * 3
    signal = next(a for a in inventory.apps if a.name == "Signal")
    assert signal.extra_value("launchers") == "/home/alice/.local/share/applications/appimagekit-signal.desktop"



def test_one_malformed_snap_in_the_state_is_one_error_and_the_others_survive(snap_root: Path) -> None:
    path = snap_root / "var/lib/snapd/state.json"
    state = json.loads(path.read_text())
    state["data"]["snaps"]["broken"] = {"current": "1", "sequence": 7}
    path.write_text(json.dumps(state))
    inventory = collect(context(snap_root), ["snap"])
    assert [(e.collector, "broken" in e.message) for e in inventory.errors] == [("snap", True)]
    assert sorted(a.id for a in inventory.apps) == ["telegram-desktop", "zoom-client"]


def test_an_unreadable_subfolder_is_one_error_and_its_siblings_are_still_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_tool("mksquashfs")
    root = tmp_path / "root"
    payload = tmp_path / "AppDir"
    payload.mkdir()
    (payload / "AppRun").write_text("#!/bin/sh\n")
    _appimage(root / "opt/tools/Banned-1.0.AppImage", payload)
    (root / "opt/locked").mkdir(parents=True)
    real_scan = appimage.folder_scan

    def folder_scan(path, select, *, root):  # these tests run as root, whom a mode of 000 does not stop
        if os.fspath(path).endswith("/opt/locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scan(path, select, root=root)

    monkeypatch.setattr(appimage, "folder_scan", folder_scan)
    result = AppImageCollector().collect(context(root))
    assert [a.path for a in result.apps] == ["/opt/tools/Banned-1.0.AppImage"]
    assert [e.message for e in result.errors] == [f"{root}/opt/locked: Permission denied"]
