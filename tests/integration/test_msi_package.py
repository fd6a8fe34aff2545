"""The .msi from packaging/windows/build-msi, built for real with wixl and read back with msiinfo
and msiextract (msitools): its tables, files, service entries, upgrade code and the config that
upgrades keep. Windows itself is not here, so the service wrapper is a stand-in file: WinSW's
binary comes from its release page (docs/platforms.md), and nothing here runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from tests.conftest import REPO, require_tool

UPGRADE_CODE = "{5D2A7E1C-93B4-4F60-8C1E-A7B2C3D4E5F6}"
SERVICE_OWN_PROCESS, AUTO_START = "16", "2"
START_ON_INSTALL_STOP_BOTH_REMOVE_ON_UNINSTALL = str(1 | 2 | 32 | 128)
PERMANENT_NEVER_OVERWRITE_64BIT = str(16 | 128 | 256)


@pytest.fixture(scope="module")
def msi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("wixl")
    require_tool("msiinfo")
    work = tmp_path_factory.mktemp("msi")
    wrapper = work / "WinSW-x64.exe"
    wrapper.write_bytes(b"MZ stand-in for WinSW-x64.exe\n")
    built = subprocess.run([str(REPO / "packaging/windows/build-msi"), str(work / "out")], capture_output=True,
                           text=True, timeout=900, env={**os.environ, "WINSW_EXE": str(wrapper),
                                                        "PYTHON": sys.executable})
    assert built.returncode == 0, built.stderr[-3000:]
    return Path(built.stdout.strip().splitlines()[-1])


def table(msi: Path, name: str) -> list[dict[str, str]]:
    """Return the rows of one MSI table as dicts (msiinfo export: names, types, key line, rows)."""
    lines = subprocess.run(["msiinfo", "export", str(msi), name], capture_output=True, text=True, check=True,
                           timeout=60).stdout.splitlines()
    columns = lines[0].split("\t")
    return [dict(zip(columns, line.split("\t"))) for line in lines[3:]]


def test_the_msi_has_the_service_tables(msi: Path) -> None:
    tables = set(subprocess.run(["msiinfo", "tables", str(msi)], capture_output=True, text=True, check=True,
                                timeout=60).stdout.split())
    assert {"ServiceInstall", "ServiceControl", "Upgrade", "LaunchCondition", "File", "Component"} <= tables


def test_the_service_runs_the_wrapper_as_local_system_and_starts_automatically(msi: Path) -> None:
    [service] = table(msi, "ServiceInstall")
    assert (service["Name"], service["ServiceType"], service["StartType"], service["StartName"]) == \
        ("appban", SERVICE_OWN_PROCESS, AUTO_START, "LocalSystem")
    component = next(c for c in table(msi, "Component") if c["Component"] == service["Component_"])
    key_file = next(f for f in table(msi, "File") if f["File"] == component["KeyPath"])
    assert key_file["FileName"].endswith("appban-service.exe")
    [control] = table(msi, "ServiceControl")
    assert (control["Name"], control["Event"]) == ("appban", START_ON_INSTALL_STOP_BOTH_REMOVE_ON_UNINSTALL)


def test_upgrades_replace_older_versions_and_keep_the_config(msi: Path) -> None:
    upgrades = table(msi, "Upgrade")
    assert {row["UpgradeCode"] for row in upgrades} == {UPGRADE_CODE}
    assert {row["ActionProperty"] for row in upgrades} == {"WIX_UPGRADE_DETECTED", "WIX_DOWNGRADE_DETECTED"}
    config = next(c for c in table(msi, "Component") if c["Component"] == "Config")
    assert config["Attributes"] == PERMANENT_NEVER_OVERWRITE_64BIT
    conditions = {row["Condition"] for row in table(msi, "LaunchCondition")}
    assert "Installed OR PYTHON311" in conditions


def test_the_files_are_the_agent_its_windows_wheels_and_the_wrapper_config(msi: Path, tmp_path: Path) -> None:
    names = {row["FileName"].split("|")[-1] for row in table(msi, "File")}
    assert {"appban-service.exe", "appban-service.xml", "appban.py", "appban.cmd", "agent.yaml", "cli.py",
            "_psutil_windows.pyd"} <= names
    assert not any(name.endswith(".so") for name in names), "Linux binaries in a Windows package"
    subprocess.run(["msiextract", "-C", str(tmp_path), str(msi)], check=True, capture_output=True, timeout=120)
    installed = next(tmp_path.rglob("appban-service.xml")).parent
    assert (installed / "lib/agent/cli.py").read_bytes() == (REPO / "agent/cli.py").read_bytes()
    assert (installed / "lib/agent/platform/_windows.py").is_file()
    wrapper = ElementTree.parse(installed / "appban-service.xml").getroot()
    arguments = wrapper.findtext("arguments")
    assert re.search(r'appban\.py" --log-format json run --config "%ProgramData%\\appban\\agent\.yaml"', arguments)
    assert wrapper.find("log").get("mode") == "roll-by-size" and wrapper.findtext("stoptimeout") == "120 sec"
    config = next(tmp_path.rglob("agent.yaml"))
    assert config.read_bytes() == (REPO / "config/agent.example.yaml").read_bytes()


def test_without_the_wrapper_the_build_stops_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WINSW_EXE"}
    done = subprocess.run([str(REPO / "packaging/windows/build-msi"), str(tmp_path)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "WINSW_EXE" in done.stderr
    assert not list(tmp_path.iterdir())
