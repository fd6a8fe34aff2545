"""reading.folder_modes against folder_entries: the same entries, modes cut to what the listing knows."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.inventory.reading import folder_entries, folder_modes


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root/opt"
    (folder / "sub").mkdir(parents=True)
    (folder / "tool").write_text("#!/bin/sh\n")
    (folder / "tool").chmod(0o755)
    (folder / "notes.txt").write_text("x\n")
    (folder / "Zed.AppImage").write_text("x\n")
    (folder / "link").symlink_to("tool")
    (folder / "gone").symlink_to("/nowhere")
    os.mkfifo(folder / "fifo")
    return tmp_path / "root"


def test_modes_are_the_lstat_modes_of_files_and_the_type_of_folders_and_links(root: Path) -> None:
    entries = folder_entries(root / "opt", root=root)
    modes = folder_modes(root / "opt", root=root)
    assert [name for name, _ in modes] == [name for name, _ in entries] == sorted(os.listdir(root / "opt"))
    kinds = {stat.S_IFDIR, stat.S_IFLNK}
    assert modes == [(name, stat.S_IFMT(info.st_mode) if stat.S_IFMT(info.st_mode) in kinds else info.st_mode)
                     for name, info in entries]
    assert dict(modes)["tool"] & 0o111 and stat.S_ISFIFO(dict(modes)["fifo"])


@pytest.mark.parametrize("where, error", [("opt/none", FileNotFoundError), ("opt/tool", NotADirectoryError)])
def test_a_missing_folder_or_a_file_raises_as_folder_entries_does(root: Path, where: str, error: type) -> None:
    for listing in (folder_entries, folder_modes):
        with pytest.raises(error):
            listing(root / where, root=root)


def test_a_folder_link_out_of_the_root_is_refused_as_by_folder_entries(root: Path, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (root / "opt/out").symlink_to(tmp_path / "outside")
    raised = []
    for listing in (folder_entries, folder_modes):
        with pytest.raises(OSError) as error:
            listing(root / "opt/out", root=root)
        raised.append(type(error.value))
    assert raised[0] is raised[1]
