"""reading.folder_scan against folder_entries, and the AppImage search's pick of entries from it
against the lstat of every entry."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.inventory import appimage
from agent.inventory.reading import folder_entries, folder_scan


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root/opt"
    (folder / "sub/lib").mkdir(parents=True)
    (folder / "tool").write_text("#!/bin/sh\n")
    (folder / "tool").chmod(0o755)
    (folder / "notes.txt").write_text("x\n")
    (folder / "Zed.AppImage").write_text("x\n")
    (folder / "other.APPIMAGE").write_text("x\n")
    (folder / "sub/run.whl").write_text("x\n")
    (folder / "sub/run.whl").chmod(0o701)  # any execute bit: an AppImage hides under any name
    (folder / "sub/lib/deep").write_text("x\n")
    (folder / "sub/lib/deep").chmod(0o755)
    (folder / "link").symlink_to("tool")
    (folder / "gone").symlink_to("/nowhere")
    (folder / "sublink").symlink_to("sub")
    os.mkfifo(folder / "fifo")
    return tmp_path / "root"


def test_the_scan_sees_the_entries_folder_entries_lists(root: Path) -> None:
    scanned = folder_scan(root / "opt", lambda entries: sorted((e.name, e.stat(follow_symlinks=False)) for e in entries),
                          root=root)
    assert scanned == folder_entries(root / "opt", root=root)


def _by_lstat(root: Path, folder: Path, depth: int) -> list[Path]:
    """The AppImage candidates as the lstat of every entry gives them (the search before folder_scan)."""
    found = []
    for name, info in folder_entries(folder, root=root):
        if stat.S_ISREG(info.st_mode) and (name.lower().endswith(".appimage") or info.st_mode & 0o111):
            found.append(folder / name)
        elif depth > 1 and stat.S_ISDIR(info.st_mode) and name not in appimage._SKIP_DIRS:
            found.extend(_by_lstat(root, folder / name, depth - 1))
    return found


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_appimage_search_keeps_what_the_lstat_of_every_entry_keeps(root: Path, depth: int) -> None:
    errors: list = []
    found = appimage._candidates(root, root / "opt", depth, errors)
    assert found == _by_lstat(root, root / "opt", depth) and not errors
    assert [p.name for p in found] == ["Zed.AppImage", "other.APPIMAGE", *(["run.whl"] if depth > 1 else []), "tool"]


@pytest.mark.parametrize("where, error", [("opt/none", FileNotFoundError), ("opt/tool", NotADirectoryError)])
def test_a_missing_folder_or_a_file_raises_as_folder_entries_does(root: Path, where: str, error: type) -> None:
    for listing in (folder_entries, lambda path, root: folder_scan(path, list, root=root)):
        with pytest.raises(error):
            listing(root / where, root=root)


def test_a_folder_link_out_of_the_root_is_refused_as_by_folder_entries(root: Path, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (root / "opt/out").symlink_to(tmp_path / "outside")
    raised = []
    for listing in (folder_entries, lambda path, root: folder_scan(path, list, root=root)):
        with pytest.raises(OSError) as error:
            listing(root / "opt/out", root=root)
        raised.append(type(error.value))
    assert raised[0] is raised[1]
