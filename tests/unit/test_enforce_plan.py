"""The pure planner: blocking needs the entry, the local mode and a violation on this device;
every safety rail refuses with its reason; the cap refuses everything; one action per target."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.config import EnforcementConfig
from agent.enforce.plan import Facts, blocks, is_protected, plan
from agent.model import App, Device, Entry, Finding

DEVICE = Device(id="pc-1", groups=("staff",))
BLOCK = EnforcementConfig(mode="block")
FACTS = Facts(agent_pids=frozenset({4242, 4241}), unsafe_pids={77: "kernel thread"},
              uninstall_sources=frozenset({"dpkg", "flatpak"}))


def finding(app: App, action: str = "block", status: str = "violation", device: str = "pc-1", entry: str = "wps") -> Finding:
    return Finding(status, Entry(id=entry, name=entry.upper(), action=action), app, device, "names:x")


PKG = App(source="dpkg", id="wps-office", name="wps-office", device="pc-1")
PROC = App(source="process", id="wps", name="wps", path="/opt/kingsoft/wps-office/office6/wps",
           extra=(("pid", "3000"), ("ppid", "1")))
APPIMAGE = App(source="desktop", id="wps", name="WPS Office", path="/home/al/Apps/WPS.AppImage",
               extra=(("launcher", "/home/al/.local/share/applications/wps.desktop"),))


def only(result) -> tuple[str, str, str]:
    (action,) = result.actions
    return action.kind, action.target, action.refused


@pytest.mark.parametrize("action,status,mode,device,expected", [
    ("block", "violation", "block", "pc-1", True),
    ("report", "violation", "block", "pc-1", False),
    ("block", "violation", "report", "pc-1", False),
    ("block", "advisory", "block", "pc-1", False),
    ("block", "exempt", "block", "pc-1", False),
    ("block", "upcoming", "block", "pc-1", False),
    ("block", "violation", "block", "phone-9", False),
])
def test_only_a_blocking_entry_under_local_block_mode_on_a_violation_here_blocks(action, status, mode, device, expected) -> None:
    item = finding(PKG, action, status, device)
    assert blocks(item, EnforcementConfig(mode=mode), DEVICE) is expected
    assert bool(plan([item], EnforcementConfig(mode=mode), DEVICE, FACTS).actions) is expected


def test_report_mode_plans_nothing_and_says_so() -> None:
    result = plan([finding(PKG)], EnforcementConfig(), DEVICE, FACTS)
    assert result.actions == () and "mode is report" in result.render()


def test_actions_follow_the_source_and_kills_come_first() -> None:
    result = plan([finding(APPIMAGE), finding(PKG), finding(PROC)], BLOCK, DEVICE, FACTS)
    assert [(a.kind, a.target, a.refused) for a in result.actions] == [
        ("kill", "3000", ""), ("uninstall", "wps-office", ""), ("quarantine", "/home/al/Apps/WPS.AppImage", ""),
    ]


@pytest.mark.parametrize("pid,reason", [
    ("1", "PID 1 (init) is never touched"), ("0", "PID 1 (init) is never touched"),
    ("4242", "the agent itself (or its parent)"), ("4241", "the agent itself (or its parent)"),
    ("77", "kernel thread"), ("", "no process id recorded"),
])
def test_processes_no_list_may_touch(pid: str, reason: str) -> None:
    app = replace(PROC, extra=(("pid", pid),))
    assert only(plan([finding(app)], BLOCK, DEVICE, FACTS)) == ("kill", pid, reason)


@pytest.mark.parametrize("extra,reason", [
    ((("essential", "yes"),), "essential package"),
    ((("priority", "required"),), "package required by the distribution"),
])
def test_essential_and_required_packages_are_refused(extra, reason) -> None:
    app = App(source="dpkg", id="bash", name="bash", extra=extra)
    assert only(plan([finding(app)], BLOCK, DEVICE, FACTS)) == ("uninstall", "bash", reason)


@pytest.mark.parametrize("protected", [("wps-office",), ("WPS-Office",), ("/opt/kingsoft",), ("/home/al/Apps/WPS.AppImage",)])
def test_the_local_protected_list_always_wins(protected) -> None:
    config = EnforcementConfig(mode="block", protected=protected)
    apps = [PKG, PROC, APPIMAGE]
    refused = [a.refused for a in plan([finding(a) for a in apps], config, DEVICE, FACTS).actions]
    assert "protected by local config" in refused


def test_protected_path_is_a_folder_boundary_not_a_prefix() -> None:
    assert not is_protected(replace(PROC, path="/opt/kingsoft-evil/wps"), ["/opt/kingsoft"])
    assert is_protected(replace(PROC, path="/opt/kingsoft/wps"), ["/opt/kingsoft/"])


def test_above_the_cap_every_action_is_refused() -> None:
    apps = [replace(PKG, id=f"pkg{i}", name=f"pkg{i}") for i in range(3)] + [PROC]
    result = plan([finding(a) for a in apps], EnforcementConfig(mode="block", max_removals=2), DEVICE, FACTS)
    assert result.note == "too many — refused (3 removals, max_removals is 2)"
    assert all(a.refused.startswith("too many — refused") for a in result.actions)
    within = plan([finding(a) for a in apps], EnforcementConfig(mode="block", max_removals=3), DEVICE, FACTS)
    assert not any(a.refused for a in within.actions)


def test_one_action_per_target_serves_every_entry_naming_it() -> None:
    result = plan([finding(PKG, entry="wps"), finding(PKG, entry="kingsoft")], BLOCK, DEVICE, FACTS)
    (action,) = result.actions
    assert action.entries == ("wps", "kingsoft")
    assert "[entry wps, kingsoft]" in result.render()


def test_a_launcher_of_a_packaged_program_and_an_unknown_source_are_left_alone() -> None:
    packaged = replace(APPIMAGE, path="/usr/bin/wps")
    android = App(source="android", id="com.x", name="x")
    refused = {a.refused for a in plan([finding(packaged), finding(android)], BLOCK, DEVICE, FACTS).actions}
    assert refused == {"program belongs to a package; the package is what gets removed",
                       "no blocking action for source 'android' on this host"}


def test_a_source_without_an_uninstaller_here_is_not_uninstalled() -> None:
    snap = App(source="snap", id="wps-2019-snap", name="wps")
    assert only(plan([finding(snap)], BLOCK, DEVICE, FACTS))[2] == "no blocking action for source 'snap' on this host"


PHONE_APP = App(source="android", id="com.zhiliaoapp.musically", name="TikTok", device="R58M31ABCDE", user="10")


def test_a_gateway_acts_on_its_phones_through_adb() -> None:
    facts = replace(FACTS, uninstall_sources=frozenset({"android"}))
    item = finding(PHONE_APP, device="R58M31ABCDE")
    assert blocks(item, BLOCK, DEVICE)
    assert only(plan([item], BLOCK, DEVICE, facts)) == ("uninstall", "com.zhiliaoapp.musically", "")
    # still never for an advisory, or without local block mode
    assert not plan([finding(PHONE_APP, status="advisory", device="R58M31ABCDE")], BLOCK, DEVICE, facts).actions
    assert not plan([item], EnforcementConfig(), DEVICE, facts).actions


def test_ios_apps_are_left_with_what_to_do_by_hand() -> None:
    iphone = App(source="ios", id="com.zhiliaoapp.musically", name="TikTok", device="00008030-001A")
    kind, _, refused = only(plan([finding(iphone, device="00008030-001A")], BLOCK, DEVICE, FACTS))
    assert kind == "skip"
    assert "by hand" in refused and "MDM" in refused and "com.zhiliaoapp.musically" in refused


def test_macos_bundles_and_appimages_go_to_the_quarantine() -> None:
    bundle = App(source="macos", id="com.tencent.xinWeChat", name="WeChat", path="/Applications/WeChat.app")
    image = App(source="appimage", id="wps", name="WPS", path="/home/al/Apps/WPS.AppImage")
    assert only(plan([finding(bundle)], BLOCK, DEVICE, FACTS)) == ("quarantine", "/Applications/WeChat.app", "")
    assert only(plan([finding(image)], BLOCK, DEVICE, FACTS)) == ("quarantine", "/home/al/Apps/WPS.AppImage", "")


def test_windows_entries_without_a_silent_uninstaller_are_refused() -> None:
    facts = replace(FACTS, uninstall_sources=frozenset({"windows"}))
    msi = App(source="windows", id="{6D3B1A5C-0E2F-4C7A-9B1D-3E5F7A9C1B2D}", name="Kaspersky",
              extra=(("msi_product_code", "{6D3B1A5C-0E2F-4C7A-9B1D-3E5F7A9C1B2D}"),))
    interactive = App(source="windows", id="WeChat", name="WeChat", extra=(("uninstall", r"C:\WeChat\Uninstall.exe"),))
    assert only(plan([finding(msi)], BLOCK, DEVICE, facts))[2] == ""
    assert "interactive" in only(plan([finding(interactive)], BLOCK, DEVICE, facts))[2]
