"""The pure planner: blocking needs the entry, the local mode and a violation on this device;
every safety rail refuses with its reason; the cap refuses everything; one action per target."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.config import EnforcementConfig
from agent.enforce.evidence import PathFacts
from agent.enforce.plan import LAUNCHER_ONLY, Facts, blocks, is_protected, plan
from agent.model import App, Device, Entry, Finding

DEVICE = Device(id="pc-1", groups=("staff",))
BLOCK = EnforcementConfig(mode="block")
OWN_IMAGE = PathFacts(resolved="/home/al/Apps/WPS.AppImage", uid=1000, home="/home/al", home_uid=1000)
FACTS = Facts(agent_pids=frozenset({4242, 4241}), unsafe_pids={77: "kernel thread"},
              uninstall_sources=frozenset({"dpkg", "flatpak"}),
              paths={"/home/al/Apps/WPS.AppImage": OWN_IMAGE,
                     "/Applications/WeChat.app": PathFacts(resolved="/Applications/WeChat.app", uid=0)})


def finding(app: App, action: str = "block", status: str = "violation", device: str = "pc-1", entry: str = "wps") -> Finding:
    return Finding(status, Entry(id=entry, name=entry.upper(), action=action), app, device, "names:x")


PKG = App(source="dpkg", id="wps-office", name="wps-office", device="pc-1")
PROC = App(source="process", id="wps", name="wps", path="/opt/kingsoft/wps-office/office6/wps",
           extra=(("pid", "3000"), ("ppid", "1")))
APPIMAGE = App(source="appimage", id="WPS.AppImage", name="WPS Office", path="/home/al/Apps/WPS.AppImage",
               user="al")
LAUNCHER = App(source="desktop", id="wps", name="WPS Office", path="/home/al/Apps/WPS.AppImage", user="al",
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
    result = plan([finding(a) for a in apps], EnforcementConfig(mode="block", max_actions=3), DEVICE, FACTS)
    assert result.note == ("too many — refused (4 actions: 1 kill, 3 uninstall; max_actions is 3 "
                           "and covers every kind of action)")
    assert all(a.refused.startswith("too many — refused") for a in result.actions)
    within = plan([finding(a) for a in apps], EnforcementConfig(mode="block", max_actions=4), DEVICE, FACTS)
    assert not any(a.refused for a in within.actions)


@pytest.mark.parametrize("counted", [PROC, APPIMAGE, PKG, replace(PROC, path="/usr/bin/other", extra=(("pid", "3001"),))])
def test_every_kind_of_action_counts_against_the_one_cap(counted: App) -> None:
    """Kills and quarantines count as uninstalls do: one more action of any kind than the cap
    refuses the whole run, kills included."""
    others = [replace(PKG, id=f"other{i}", name=f"other{i}") for i in range(2)]
    config = EnforcementConfig(mode="block", max_actions=2)
    assert not any(a.refused for a in plan([finding(a) for a in others], config, DEVICE, FACTS).actions)
    over = plan([finding(a) for a in [*others, counted]], config, DEVICE, FACTS)
    assert over.note.startswith("too many — refused (3 actions")
    assert [a.refused.startswith("too many") for a in over.actions] == [True] * 3


def test_refused_actions_do_not_count_against_the_cap() -> None:
    refused = [replace(PROC, extra=(("pid", "1"),)), App(source="dpkg", id="bash", name="bash", extra=(("essential", "yes"),))]
    result = plan([finding(a) for a in [*refused, PKG]], EnforcementConfig(mode="block", max_actions=1), DEVICE, FACTS)
    assert not result.note and [a.refused for a in result.actions if a.target == "wps-office"] == [""]


def test_one_action_per_target_serves_every_entry_naming_it() -> None:
    result = plan([finding(PKG, entry="wps"), finding(PKG, entry="kingsoft")], BLOCK, DEVICE, FACTS)
    (action,) = result.actions
    assert action.entries == ("wps", "kingsoft")
    assert "[entry wps, kingsoft]" in result.render()


def test_a_launcher_is_evidence_for_the_report_never_a_target() -> None:
    """Whatever its Exec= says — the user's own AppImage, /etc/shadow, a packaged program — a
    launcher never leads to a file being moved."""
    for path in ("/home/al/Apps/WPS.AppImage", "//etc/shadow", "/usr/bin/wps", "/opt/wps/wps"):
        assert only(plan([finding(replace(LAUNCHER, path=path))], BLOCK, DEVICE, FACTS)) == ("skip", path, LAUNCHER_ONLY)


def test_an_unknown_source_is_left_alone() -> None:
    android = App(source="android", id="com.x", name="x")
    assert only(plan([finding(android)], BLOCK, DEVICE, FACTS))[2] == "no blocking action for source 'android' on this host"


@pytest.mark.parametrize("path,seen,why", [
    ("//etc/shadow", PathFacts(resolved="/etc/shadow", uid=0, home="/home/al", home_uid=1000), "outside al's home"),
    ("/home/al/Apps/x", PathFacts(resolved="/etc/shadow", uid=0, home="/home/al", home_uid=1000), "outside al's home"),
    ("/home/al/Apps/x", PathFacts(resolved="/home/alice/x", uid=1000, home="/home/al", home_uid=1000), "outside al's home"),
    ("/home/al/Apps/x", PathFacts(resolved="/home/al/Apps/x", uid=0, home="/home/al", home_uid=1000), "owned by uid 0"),
    ("/home/al/Apps/x", PathFacts(resolved="/home/al/Apps/x", uid=1000, links=2, home="/home/al", home_uid=1000), "hard links"),
    ("/home/al/Apps/x", PathFacts(resolved="/home/al/Apps/x", uid=1000, home="/home/al", home_uid=1000, package="dpkg:x"), "package"),
    ("/home/al/Apps/x", PathFacts(resolved="/home/al/Apps/x", uid=1000), "no home folder"),
    ("/home/al/Apps/x", PathFacts(outside_root=True), "outside the system"),
    ("/home/al/Apps/x", PathFacts(), "not found"),
    ("/home/al/Apps/unseen", None, "not examined"),
])
def test_a_scanned_file_is_moved_only_from_its_own_users_home(path: str, seen: PathFacts | None, why: str) -> None:
    facts = replace(FACTS, paths={path: seen} if seen is not None else {})
    kind, _, refused = only(plan([finding(replace(APPIMAGE, path=path))], BLOCK, DEVICE, facts))
    assert kind == "quarantine" and why in refused


@pytest.mark.parametrize("resolved,allowed", [
    ("/opt/wps/WPS.AppImage", True), ("/usr/local/bin/WPS.AppImage", True), ("/Applications/WeChat.app", True),
    ("/usr/bin/wps", False), ("/etc/shadow", False), ("/opt", False), ("/optical/x", False), ("/var/tmp/x", False),
])
def test_a_system_wide_file_is_moved_only_from_the_install_folders(resolved: str, allowed: bool) -> None:
    image = replace(APPIMAGE, path="/opt/x", user="")
    facts = replace(FACTS, paths={"/opt/x": PathFacts(resolved=resolved, uid=0)})
    kind, target, refused = only(plan([finding(image)], BLOCK, DEVICE, facts))
    assert (kind, target) == ("quarantine", resolved)
    assert (refused == "") is allowed and (allowed or "outside /opt, /usr/local/bin, /Applications" in refused)


def test_protected_paths_are_compared_after_folding_and_resolution() -> None:
    config = EnforcementConfig(mode="block", protected=("/home/al/Apps",))
    for path in ("/home/al//Apps/WPS.AppImage", "/home/al/./Apps/WPS.AppImage", "/home/al/x/../Apps/WPS.AppImage"):
        assert is_protected(replace(APPIMAGE, path=path), config.protected)
    link = replace(APPIMAGE, path="/home/al/link")
    facts = replace(FACTS, paths={"/home/al/link": OWN_IMAGE})
    assert only(plan([finding(link)], config, DEVICE, facts)) == ("quarantine", OWN_IMAGE.resolved, "protected by local config")


def test_the_shell_and_login_path_are_never_killed_or_removed() -> None:
    for exe in ("/usr/sbin/sshd", "/usr/bin/bash", "/usr/lib/systemd/systemd", "/usr/bin/sudo"):
        assert only(plan([finding(replace(PROC, path=exe))], BLOCK, DEVICE, FACTS))[2] == "on the shell, boot or login path"
    assert only(plan([finding(replace(PROC, path="/home/al/bin/bash"))], BLOCK, DEVICE, FACTS))[2] == ""
    for package in ("openssh-server", "sudo", "libpam-modules", "systemd"):
        app = App(source="dpkg", id=package, name=package)
        assert only(plan([finding(app)], BLOCK, DEVICE, FACTS))[2] == "part of the base system or the login path"


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
    image = App(source="appimage", id="wps", name="WPS", path="/home/al/Apps/WPS.AppImage", user="al")
    assert only(plan([finding(bundle)], BLOCK, DEVICE, FACTS)) == ("quarantine", "/Applications/WeChat.app", "")
    assert only(plan([finding(image)], BLOCK, DEVICE, FACTS)) == ("quarantine", "/home/al/Apps/WPS.AppImage", "")


def test_windows_entries_without_a_silent_uninstaller_are_refused() -> None:
    facts = replace(FACTS, uninstall_sources=frozenset({"windows"}))
    msi = App(source="windows", id="{6D3B1A5C-0E2F-4C7A-9B1D-3E5F7A9C1B2D}", name="Kaspersky",
              extra=(("msi_product_code", "{6D3B1A5C-0E2F-4C7A-9B1D-3E5F7A9C1B2D}"),))
    interactive = App(source="windows", id="WeChat", name="WeChat", extra=(("uninstall", r"C:\WeChat\Uninstall.exe"),))
    assert only(plan([finding(msi)], BLOCK, DEVICE, facts))[2] == ""
    assert "interactive" in only(plan([finding(interactive)], BLOCK, DEVICE, facts))[2]


def test_one_file_seen_twice_is_judged_by_the_evidence_that_allows_it_whatever_the_order() -> None:
    """The same AppImage found in /opt (system-wide, allowed) and through a link in a home
    (refused): one action, allowed, in either order."""
    system = replace(APPIMAGE, path="/opt/wps/WPS.AppImage", user="")
    linked = replace(APPIMAGE, path="/home/al/AppImages/WPS.AppImage")
    seen = PathFacts(resolved="/opt/wps/WPS.AppImage", uid=0, home="/home/al", home_uid=1000)
    facts = replace(FACTS, paths={system.path: PathFacts(resolved=system.path, uid=0), linked.path: seen})
    for order in ([system, linked], [linked, system]):
        (action,) = plan([finding(a) for a in order], BLOCK, DEVICE, facts).actions
        assert (action.target, action.refused, action.app) == ("/opt/wps/WPS.AppImage", "", system)


def test_the_processes_of_one_program_are_one_unit_of_the_cap_and_each_is_still_killed() -> None:
    sixteen = [replace(PROC, extra=(("pid", str(5000 + i)),)) for i in range(16)]
    result = plan([finding(a) for a in sixteen], EnforcementConfig(mode="block", max_actions=1), DEVICE, FACTS)
    assert not result.note and [(a.kind, a.refused) for a in result.actions] == [("kill", "")] * 16
    two = [*sixteen, replace(PROC, path="/usr/bin/other", extra=(("pid", "6000"),))]
    over = plan([finding(a) for a in two], EnforcementConfig(mode="block", max_actions=1), DEVICE, FACTS)
    assert over.note.startswith("too many — refused (2 actions: 2 kill;")


@pytest.mark.parametrize("extra", [
    (("kind", "arp"), ("quiet_uninstall", r'"C:\Users\al\evil.exe" /S')),
    (("kind", "arp"), ("msi_product_code", "{6D3B1A5C-0E2F-4C7A-9B1D-3E5F7A9C1B2D}")),
    (("kind", "msix"), ("package_full_name", "Microsoft.WindowsStore_22401.1401.6.0_x64__8wekyb3d8bbwe")),
])
def test_a_per_user_windows_entry_is_never_run_as_an_administrator(extra) -> None:
    """A user writes their own NTUSER.DAT: a QuietUninstallString there is their command, an MSI
    product code there may be the endpoint agent's. Reported, never uninstalled by the agent."""
    facts = replace(FACTS, uninstall_sources=frozenset({"windows"}))
    app = App(source="windows", id="TikTok", name="TikTok", user="al", extra=(*extra, ("scope", "user")))
    assert only(plan([finding(app)], BLOCK, DEVICE, facts))[2].startswith("per-user entry from the user's own registry hive")
    machine = replace(app, user="", extra=(*extra, ("scope", "machine")))
    assert only(plan([finding(machine)], BLOCK, DEVICE, facts))[2] == ""
