"""The quarantine store on real files: a program with a name at the file-name limit can be
quarantined, and when a later move fails (a read-only filesystem) what was already moved stays
listed and restorable."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.enforce.quarantine import quarantine, records, restore
from enforce_support import need_root


def test_a_name_at_the_file_name_limit_is_quarantined_and_restored(tmp_path: Path) -> None:
    root, store = tmp_path / "root", tmp_path / "store"
    program = root / "home/ana/Apps" / ("t" * 255)
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    record = quarantine(str(root), store, [f"/home/ana/Apps/{program.name}"], "tiktok", "tiktok")
    assert not program.exists()
    restore(str(root), store, record.id)
    assert program.read_text() == "#!/bin/sh\n"


def test_what_was_moved_before_a_failed_move_stays_restorable(tmp_path: Path) -> None:
    need_root()
    root, store = tmp_path / "root", tmp_path / "store"
    first = root / "opt/tiktok/tiktok"
    first.parent.mkdir(parents=True)
    first.write_text("binary")
    media = root / "media"
    media.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "appban-test", str(media)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        (media / "TikTok.AppImage").write_text("image")
        subprocess.run(["mount", "-o", "remount,ro", str(media)], check=True)
        with pytest.raises(OSError):
            quarantine(str(root), store, ["/opt/tiktok/tiktok", "/media/TikTok.AppImage"], "tiktok", "tiktok")
    finally:
        subprocess.run(["umount", "-l", str(media)], check=True)
    [record] = records(store)
    assert [item["original"] for item in record.items] == ["/opt/tiktok/tiktok"]
    restore(str(root), store, record.id)
    assert first.read_text() == "binary"


def test_a_damaged_manifest_is_one_clear_error(tmp_path: Path) -> None:
    from agent.enforce.quarantine import QuarantineError

    folder = tmp_path / "store" / "20261122T000000-abcdef"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"id": "20261122T0')
    with pytest.raises(QuarantineError, match="unreadable manifest"):
        records(tmp_path / "store")


def test_across_filesystems_a_file_and_a_bundle_are_moved_and_restored_whole(tmp_path: Path) -> None:
    """The store on one filesystem, the home on another (a tmpfs mounted for the test): the move
    copies through the no-follow folder fd and removes the original; restore puts back content,
    mode and owner, links inside a bundle stay links."""
    need_root()
    home = tmp_path / "root/home"
    home.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "appban-test", str(home)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        image = home / "ana/Apps/TikTok.AppImage"
        bundle = home / "ana/Applications/TikTok.app"
        (bundle / "Contents/MacOS").mkdir(parents=True)
        image.parent.mkdir(parents=True)
        image.write_bytes(b"image")
        image.chmod(0o751)
        os.chown(image, 61021, 61021)
        (bundle / "Contents/MacOS/TikTok").write_bytes(b"binary")
        (bundle / "Contents/current").symlink_to("MacOS")
        store = tmp_path / "store"
        record = quarantine(str(tmp_path / "root"), store, ["/home/ana/Apps/TikTok.AppImage",
                                                            "/home/ana/Applications/TikTok.app"], "tiktok", "tiktok")
        assert not image.exists() and not bundle.exists()
        assert (store / record.id / "0-TikTok.AppImage").read_bytes() == b"image"
        restore(str(tmp_path / "root"), store, record.id)
        assert image.read_bytes() == b"image" and image.stat().st_mode & 0o777 == 0o751
        assert (image.stat().st_uid, image.stat().st_gid) == (61021, 61021)
        assert (bundle / "Contents/MacOS/TikTok").read_bytes() == b"binary"
        assert os.readlink(bundle / "Contents/current") == "MacOS"
        assert records(store) == []
    finally:
        subprocess.run(["umount", "-l", str(home)], check=True)
