"""Files a user plants where collectors look (issue 11, item 5): real FIFOs, symlinks to
/dev/zero, property lists in an unknown encoding. Each must cost at most its own record: the
scan never blocks, never reads a device, and the collector's other records survive.

The collection runs as a real `appban inventory --root` process with a timeout, so a collector
that blocks on a FIFO fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import plistlib
import stat
import subprocess
from pathlib import Path

import pytest

from agent.inventory.reading import RECORD_LIMIT, UnsafeFileError, read_bytes, read_head, read_text
from tests.conftest import run_cli
from tests.volumes import app_bundle, info

SCAN_TIMEOUT = 8.0
LAUNCHER = "[Desktop Entry]\nType=Application\nName={name}\nExec=/opt/{name}/{name}\n"


def _inventory(root: Path, *sources: str) -> dict:
    args = ["inventory", "--root", str(root), "--format", "json"]
    for source in sources:
        args += ["--source", source]
    try:
        done = run_cli(*args, timeout=SCAN_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the scan of {root} blocked for {SCAN_TIMEOUT:g}s")
    assert done.returncode in (0, 2), done.stderr
    return json.loads(done.stdout)


def _names(document: dict, source: str) -> set[str]:
    return {a["name"] for a in document["apps"] if a["source"] == source}


def _errors(document: dict, collector: str) -> list[str]:
    return [e["message"] for e in document["errors"] if e["collector"] == collector]


def _device_zero(root: Path) -> None:
    """Make the root's own /dev/zero (a real character device): a link to /dev/zero in a root is
    resolved inside it, never to the host's, so the device must be there to be refused as one."""
    (root / "dev").mkdir(exist_ok=True)
    os.mknod(root / "dev" / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))


def test_reading_refuses_fifos_devices_and_oversized_files(tmp_path: Path) -> None:
    fifo = tmp_path / "x.desktop"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.desktop"
    zero.symlink_to("/dev/zero")
    big = tmp_path / "big"
    big.write_bytes(b"x" * (RECORD_LIMIT + 1))
    ok = tmp_path / "ok"
    ok.write_bytes(b"fine\xff")
    for path in (fifo, zero):
        with pytest.raises(UnsafeFileError, match="not a regular file"):
            read_bytes(path)
        with pytest.raises(UnsafeFileError, match="not a regular file"):
            read_head(path, 64)
    with pytest.raises(UnsafeFileError, match="larger than"):
        read_bytes(big)
    assert read_head(big, 4) == b"xxxx"
    assert read_text(ok) == "fine\ufffd"
    assert read_bytes(big, RECORD_LIMIT + 1) == big.read_bytes()
    with pytest.raises(IsADirectoryError):
        read_bytes(tmp_path)


@pytest.mark.skipif(not Path("/proc/version").exists(), reason="no /proc")
def test_a_file_whose_size_fstat_does_not_know_is_read_whole() -> None:
    """/proc's files say size 0: the read that asks for `fstat`'s size must not stop there."""
    expected = Path("/proc/version").read_bytes()
    assert expected and read_bytes("/proc/version") == expected


def test_planted_launchers_cost_only_themselves(tmp_path: Path) -> None:
    apps = tmp_path / "home" / "eve" / ".local" / "share" / "applications"
    apps.mkdir(parents=True)
    (apps / "a-tiktok.desktop").write_text(LAUNCHER.format(name="TikTok"))
    os.mkfifo(apps / "b-fifo.desktop")
    _device_zero(tmp_path)
    (apps / "c-zero.desktop").symlink_to("/dev/zero")
    (apps / "d-huge.desktop").write_bytes(b"[Desktop Entry]\nName=Huge\n" + b"#" * (RECORD_LIMIT + 1))
    (apps / "e-wechat.desktop").write_text(LAUNCHER.format(name="WeChat"))
    document = _inventory(tmp_path, "desktop")
    assert _names(document, "desktop") == {"TikTok", "WeChat"}
    errors = _errors(document, "desktop")
    assert len(errors) == 3
    assert any("b-fifo.desktop: not a regular file (FIFO)" in e for e in errors)
    assert any("c-zero.desktop: not a regular file (character device)" in e for e in errors)
    assert any("d-huge.desktop: larger than" in e for e in errors)


def test_a_bogus_plist_encoding_and_a_fifo_plist_do_not_hide_other_bundles(tmp_path: Path) -> None:
    apps = tmp_path / "Applications"
    app_bundle(apps, "TikTok", info("com.zhiliaoapp.musically", "TikTok", "35.1", "351"))
    utf9 = app_bundle(apps, "Utf9", None)
    (utf9 / "Contents" / "Info.plist").write_bytes(
        b'<?xml version="1.0" encoding="UTF-9"?>\n' + plistlib.dumps(info("x.y", "Utf9", "1", "1")).split(b"?>", 1)[1])
    fifo = app_bundle(apps, "Fifo", None)
    os.mkfifo(fifo / "Contents" / "Info.plist")
    zero = app_bundle(apps, "Zero", None)
    _device_zero(tmp_path)
    (zero / "Contents" / "Info.plist").symlink_to("/dev/zero")
    app_bundle(apps, "WeChat", info("com.tencent.xinWeChat", "WeChat", "3.8", "1"), plistlib.FMT_BINARY)
    document = _inventory(tmp_path, "macos")
    assert _names(document, "macos") == {"TikTok", "WeChat"}
    errors = _errors(document, "macos")
    assert len(errors) == 3, errors
    assert any("Utf9.app" in e and "LookupError" in e for e in errors)
    assert any("Fifo.app" in e and "FIFO" in e for e in errors)
    assert any("Zero.app" in e and "character device" in e for e in errors)


def _flatpak_deploy(installation: Path, app_id: str, metadata: str | None) -> Path:
    """Lay out one deployed ref as flatpak 1.14 does (see agent/inventory/flatpak.py)."""
    branch = installation / "app" / app_id / "x86_64" / "stable"
    commit = branch / "0123abcd"
    (commit / "files").mkdir(parents=True)
    (branch / "active").symlink_to("0123abcd")
    if metadata is not None:
        (commit / "metadata").write_text(metadata)
    (commit / "deploy").write_bytes(b"flathub\0")
    return commit


def test_fifo_flatpak_metadata_costs_its_app_only(tmp_path: Path) -> None:
    installation = tmp_path / "var" / "lib" / "flatpak"
    good = "[Application]\nname={}\nruntime=org.freedesktop.Platform/x86_64/23.08\n"
    _flatpak_deploy(installation, "com.tiktok.TikTok", good.format("com.tiktok.TikTok"))
    fifo = _flatpak_deploy(installation, "org.example.Fifo", None)
    os.mkfifo(fifo / "metadata")
    zero = _flatpak_deploy(installation, "org.example.Zero", None)
    _device_zero(tmp_path)
    (zero / "metadata").symlink_to("/dev/zero")
    odd = _flatpak_deploy(installation, "org.example.Odd", good.format("org.example.Odd"))
    os.mkfifo(odd / "deploy.fifo")
    (odd / "deploy").unlink()
    (odd / "deploy").symlink_to("deploy.fifo")  # a FIFO for the origin: the app stays, without it
    document = _inventory(tmp_path, "flatpak")
    assert {a["id"] for a in document["apps"]} == {"com.tiktok.TikTok", "org.example.Odd"}
    errors = _errors(document, "flatpak")
    assert len(errors) == 2, errors
    assert all("not a regular file" in e for e in errors)


def test_fifo_and_device_appimages_and_snap_state_do_not_block(tmp_path: Path) -> None:
    downloads = tmp_path / "home" / "eve" / "Downloads"
    downloads.mkdir(parents=True)
    os.mkfifo(downloads / "Evil-1.0-x86_64.AppImage")
    _device_zero(tmp_path)
    (downloads / "Zero-1.0-x86_64.AppImage").symlink_to("/dev/zero")
    snapd = tmp_path / "var" / "lib" / "snapd"
    snapd.mkdir(parents=True)
    os.mkfifo(snapd / "state.json")
    snap_yaml = tmp_path / "snap" / "tiktok" / "7" / "meta" / "snap.yaml"
    snap_yaml.parent.mkdir(parents=True)
    snap_yaml.write_text("name: tiktok\nversion: '1.0'\n")
    (tmp_path / "snap" / "tiktok" / "current").symlink_to("7")
    document = _inventory(tmp_path, "appimage", "snap")
    assert _names(document, "snap") == {"tiktok"}  # listed from the mounted snaps instead
    assert any("state.json: not a regular file (FIFO)" in e for e in _errors(document, "snap"))
    assert _names(document, "appimage") == set()  # the FIFO is skipped, not waited on


def test_a_fifo_package_database_is_one_error(tmp_path: Path) -> None:
    status = tmp_path / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    os.mkfifo(status)
    pacman = tmp_path / "var" / "lib" / "pacman" / "local"
    (pacman / "good-1.0-1").mkdir(parents=True)
    (pacman / "good-1.0-1" / "desc").write_text("%NAME%\ngood\n\n%VERSION%\n1.0-1\n\n")
    (pacman / "fifo-1.0-1").mkdir()
    os.mkfifo(pacman / "fifo-1.0-1" / "desc")
    document = _inventory(tmp_path, "dpkg", "pacman")
    assert any("not a regular file (FIFO)" in e for e in _errors(document, "dpkg"))
    assert {a["id"] for a in document["apps"] if a["source"] == "pacman"} == {"good"}
    assert any("desc: not a regular file (FIFO)" in e for e in _errors(document, "pacman"))
