"""The quarantine store on real files: a program with a name at the file-name limit can be
quarantined, and when a later move fails (a read-only filesystem) what was already moved stays
listed and restorable."""

from __future__ import annotations

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
