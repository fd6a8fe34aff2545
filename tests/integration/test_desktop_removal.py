"""Removal hooks run for real where they can here: the Windows uninstall executor through the
runner (with a stand-in msiexec that records its arguments)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.stand_ins import stand_in
from agent.enforce.windows import uninstall
from agent.model import App
from agent.runner import CommandError, Runner

CODE = "{6D3B1A5C-0E2F-4C7A-9B1D-3E5F7A9C1B2D}"


def test_msi_uninstall_runs_msiexec_silently_through_the_runner(tmp_path: Path) -> None:
    msiexec = stand_in(tmp_path / "msiexec")
    app = App(source="windows", id=CODE, extra=(("kind", "arp"), ("msi_product_code", CODE)))
    uninstall(app, Runner(commands={"msiexec.exe": str(msiexec)}))
    assert msiexec.calls() == [["/x", CODE, "/qn", "/norestart"]]


def test_failed_uninstaller_is_a_command_error(tmp_path: Path) -> None:
    powershell = stand_in(tmp_path / "powershell", exit_code=3)
    app = App(source="windows", id="BytedancePte.Ltd.TikTok", extra=(
        ("kind", "msix"), ("package_full_name", "BytedancePte.Ltd.TikTok_1.0.17.0_x64__6yccndn6064se")))
    with pytest.raises(CommandError, match="exit status 3"):
        uninstall(app, Runner(commands={"powershell.exe": str(powershell)}))
