"""Removal through each source's own manager: a real .rpm built with rpmbuild and installed with
the real rpm into a throwaway root is removed by enforcement and excluded from dnf; flatpak and
snap (not installable in the test machine) are driven through stand-ins that assert the exact
arguments, as borgmatic's end-to-end tests do."""

from __future__ import annotations

import io
from pathlib import Path

from tests.stand_ins import stand_in
from agent.config import parse_config
from agent.enforce.act import enforce
from agent.enforce.uninstall import uninstall
from agent.model import App, Entry, Finding
from agent.model import Device
from agent.runner import Runner
from enforce_support import build_rpm, config_yaml, need_root, rpm, unique

DEVICE = Device(id="test-host")


def test_rpm_package_is_removed_and_excluded_from_dnf(tmp_path: Path) -> None:
    need_root()
    root = tmp_path / "sys"
    root.mkdir()
    package = unique("appban-test-wps")
    assert rpm(root, "--initdb").returncode == 0
    assert rpm(root, "-i", "--nodeps", str(build_rpm(tmp_path, package, "wps"))).returncode == 0
    (root / "etc/dnf").mkdir(parents=True)
    (root / "etc/dnf/dnf.conf").write_text("[main]\ngpgcheck=1\n")
    config = parse_config(config_yaml(root, tmp_path / "state").encode(), "config")
    found = Finding("violation", Entry(id="wps-office", name="WPS", action="block"),
                    App(source="rpm", id=package, name=package, device=DEVICE.id), DEVICE.id, "rpm:" + package)
    done = enforce([found], config, DEVICE, Runner(), io.StringIO())
    assert [f.outcome for f in done.findings] == ["removed"]
    assert "is not installed" in rpm(root, "-q", package).stdout
    assert (root / "etc/dnf/dnf.conf").read_text() == f"[main]\ngpgcheck=1\nexcludepkgs={package}\n"


def test_flatpak_system_and_user_installs_and_snaps_get_their_own_commands(tmp_path: Path) -> None:
    tools = {name: stand_in(tmp_path / name) for name in ("flatpak", "snap", "runuser")}
    runner = Runner({name: str(tool) for name, tool in tools.items()})
    system = App(source="flatpak", id="com.wps.Office", name="WPS Office")
    user = App(source="flatpak", id="com.wps.Office", name="WPS Office", user="alice")
    snap = App(source="snap", id="wps-2019-snap", name="wps-2019-snap")
    assert uninstall(system, "/", "wps", runner) == "removed (flatpak); pinned: flatpak mask com.wps.Office"
    uninstall(user, "/", "wps", runner)
    assert uninstall(snap, "/", "wps", runner) == "removed (snap)"
    assert tools["flatpak"].calls() == [
        ["uninstall", "--noninteractive", "-y", "--system", "com.wps.Office"], ["mask", "--system", "com.wps.Office"]]
    assert tools["runuser"].calls() == [
        ["-u", "alice", "--", "flatpak", "uninstall", "--noninteractive", "-y", "--user", "com.wps.Office"],
        ["-u", "alice", "--", "flatpak", "mask", "--user", "com.wps.Office"]]
    assert tools["snap"].calls() == [["remove", "--purge", "wps-2019-snap"]]
