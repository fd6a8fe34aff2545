"""`packaging/build-all OUTDIR` builds the .deb, the .rpm and the .msi into OUTDIR (each package's
own test installs or inspects it); without the WinSW binary it still builds the Linux packages
and exits 2 saying what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, require_tool

BUILD_ALL = REPO / "packaging/build-all"


def build_all(out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    for tool in ("dpkg-buildpackage", "rpmbuild", "wixl"):
        require_tool(tool)
    clean = {k: v for k, v in os.environ.items() if k != "WINSW_EXE"}
    return subprocess.run([str(BUILD_ALL), str(out)], capture_output=True, text=True, timeout=1200,
                          env={**clean, "PYTHON": sys.executable, **env})


@pytest.mark.slow
def test_build_all_makes_the_three_packages(tmp_path: Path) -> None:
    wrapper = tmp_path / "WinSW-x64.exe"
    wrapper.write_bytes(b"MZ stand-in for WinSW-x64.exe\n")
    done = build_all(tmp_path / "out", WINSW_EXE=str(wrapper))
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [Path(line) for line in done.stdout.split()]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in printed) == [
        "appban-0.1.0-1.noarch.rpm", "appban-0.1.0-x64.msi", "appban_0.1.0_all.deb"]
    magic = {p.suffix: p.read_bytes()[:21] for p in printed}
    assert magic[".deb"] == b"!<arch>\ndebian-binary", "an ar archive led by debian-binary"
    assert magic[".rpm"][:4] == b"\xed\xab\xee\xdb", "the rpm lead"
    assert magic[".msi"][:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an OLE compound file, as every .msi"


@pytest.mark.slow
def test_without_the_wrapper_the_linux_packages_are_built_and_the_exit_says_why(tmp_path: Path) -> None:
    done = build_all(tmp_path)
    assert done.returncode == 2 and "WINSW_EXE" in done.stderr
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".deb", ".rpm"]
