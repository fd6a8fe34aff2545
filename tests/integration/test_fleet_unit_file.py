"""The shipped fleet unit passes the real `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, require_tool


def test_fleet_unit_verifies(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    unit = tmp_path / "appban-fleet.service"
    # verify checks that ExecStart exists: point it at the installed entry point.
    text = (REPO / "packaging" / "systemd" / "appban-fleet.service").read_text()
    appban = shutil.which("appban") or str(Path(sys.executable).with_name("appban"))
    unit.write_text(text.replace("/usr/bin/appban", appban))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "appban-fleet.service" not in done.stderr
