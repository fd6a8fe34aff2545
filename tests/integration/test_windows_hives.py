"""The windows collector on real hive files (regipy test data from real Windows machines), as
they are and laid out as a mounted Windows volume with keys merged in by hivexregedit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.inventory import collect
from agent.inventory.base import Context
from agent.inventory.windows import (
    USER_UNINSTALL, HiveError, HiveFileReader, WindowsCollector, package_apps, uninstall_apps,
)
from agent.model import App
from tests.hives import PACKAGES, fixture_hive, hivexregedit
from tests.volumes import CALCULATOR, MSI_CODE, TIKTOK, windows_volume


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    hivexregedit()
    return windows_volume(tmp_path_factory.mktemp("windows-volume"))


@pytest.fixture(scope="module")
def collected(volume: Path):
    return WindowsCollector().collect(Context(root=volume, live=False))


def by_id(apps: list[App], ident: str) -> list[App]:
    return [a for a in apps if a.id == ident]


def test_user_hive_as_it_is_lists_its_per_user_installs(tmp_path: Path) -> None:
    hive = fixture_hive("NTUSER_with_winscp.DAT", tmp_path / "NTUSER.DAT")
    apps = uninstall_apps(HiveFileReader(hive), USER_UNINSTALL, scope="user", user="tony")
    assert sorted(a.name for a in apps) == [
        "GitHub Desktop", "JetBrains dotPeek 2021.3.3", "Python 3.10.2 (64-bit)", "Zoom"]
    github = by_id(apps, "GitHubDesktop")[0]
    assert (github.version, github.publisher, github.user) == ("3.0.0", "GitHub, Inc.", "tony")
    assert github.path == r"C:\Users\tony\AppData\Local\GitHubDesktop"
    assert github.extra_value("quiet_uninstall") == r'"C:\Users\tony\AppData\Local\GitHubDesktop\Update.exe" --uninstall -s'
    assert github.aliases == ("GitHub Desktop",)
    python = by_id(apps, "{c60fd5ac-367d-4e3a-a975-f157502ac30a}")[0]
    assert python.extra_value("msi_product_code") == ""  # a Burn bundle with a GUID key, not an MSI product


def test_user_hive_without_uninstall_key_lists_nothing(tmp_path: Path) -> None:
    hive = fixture_hive("NTUSER.DAT", tmp_path / "NTUSER.DAT")
    assert uninstall_apps(HiveFileReader(hive), USER_UNINSTALL, scope="user") == []
    assert package_apps(HiveFileReader(hive), PACKAGES, scope="user") == []


def test_damaged_and_foreign_files_raise_hive_error_naming_the_file(tmp_path: Path) -> None:
    hive = fixture_hive("NTUSER_with_winscp.DAT", tmp_path / "NTUSER.DAT")
    cut = tmp_path / "cut.DAT"
    cut.write_bytes(hive.read_bytes()[:65536])
    with pytest.raises(HiveError, match=r"cut\.DAT: damaged or not a registry hive"):
        uninstall_apps(HiveFileReader(cut), USER_UNINSTALL, scope="user")
    text = tmp_path / "notes.txt"
    text.write_text("not a hive\n")
    with pytest.raises(HiveError, match=r"notes\.txt: damaged or not a registry hive"):
        HiveFileReader(text)
    with pytest.raises(HiveError, match=r"missing\.DAT: "):
        HiveFileReader(tmp_path / "missing.DAT")


def test_machine_entries_both_views_skipping_hidden_and_updates(collected) -> None:
    machine = [a for a in collected.apps if a.extra_value("scope") == "machine"]
    names = {a.name for a in machine}
    assert {"微信", "Contoso Agent", "GitKraken"} <= names
    assert not names & {"Hidden Runtime", "Security Update for Microsoft Office (KB5002110)",
                        "Update for Windows (KB4023057)"}
    assert not by_id(machine, "NoName")
    wechat = by_id(machine, "WeChat")[0]
    assert (wechat.publisher, wechat.version, wechat.extra_value("view")) == ("腾讯科技(深圳)有限公司", "3.9.12.51", "32-bit")
    contoso = by_id(machine, MSI_CODE)
    assert len(contoso) == 1, "the same MSI product in both views is one install"
    assert contoso[0].extra_value("view") == "64-bit,32-bit"
    assert contoso[0].extra_value("msi_product_code") == MSI_CODE
    assert MSI_CODE in contoso[0].aliases


def test_every_profile_is_read_logged_on_or_not(collected) -> None:
    users = {a.user for a in collected.apps if a.extra_value("kind") == "arp"}
    assert users == {"", "tony", "anna"}  # vibranium has none; Default is a template, not a person
    capcut = by_id(collected.apps, "CapCut")[0]
    assert (capcut.user, capcut.publisher, capcut.extra_value("scope")) == ("anna", "Bytedance Pte. Ltd.", "user")
    assert capcut.extra_value("hive") == "/Users/anna/NTUSER.DAT"
    assert len(by_id(collected.apps, "ZoomUMX")) == 1


def test_store_packages_per_user_and_provisioned(collected) -> None:
    tiktok = by_id(collected.apps, "BytedancePte.Ltd.TikTok")
    assert len(tiktok) == 1, "the scale resource package is part of the main package"
    app = tiktok[0]
    assert (app.user, app.version, app.name, app.publisher) == ("anna", "1.0.17.0", "BytedancePte.Ltd.TikTok", "6yccndn6064se")
    assert app.aliases == ("BytedancePte.Ltd.TikTok_6yccndn6064se", TIKTOK)
    assert app.extra_value("hive") == "/Users/anna/AppData/Local/Microsoft/Windows/UsrClass.dat"
    calculator = by_id(collected.apps, "Microsoft.WindowsCalculator")[0]
    assert calculator.extra_value("scope") == "provisioned"
    assert calculator.name == "Windows Calculator"  # from the package's AppxManifest.xml on the volume
    assert calculator.publisher.startswith("CN=Microsoft Corporation")
    assert calculator.extra_value("package_full_name") == CALCULATOR


def test_unreadable_hives_are_errors_and_the_rest_is_intact(collected) -> None:
    messages = sorted(e.message for e in collected.errors)
    assert len(messages) == 2
    assert messages[0].startswith("/Users/broken/NTUSER.DAT: not a user (NTUSER.DAT) hive")
    assert messages[1].startswith("/Users/cut/NTUSER.DAT: damaged or not a registry hive")
    assert {e.collector for e in collected.errors} == {"windows"}
    assert by_id(collected.apps, "GitHubDesktop") and by_id(collected.apps, "WeChat")


def test_availability_follows_the_root_layout(volume: Path, tmp_path: Path) -> None:
    collector = WindowsCollector()
    assert collector.unavailable(Context(root=volume, live=False)) is None
    assert "no Windows volume" in collector.unavailable(Context(root=tmp_path, live=False))
    assert "not a Windows system" in collector.unavailable(Context(live=True))


def test_collect_with_root_runs_the_windows_source(volume: Path) -> None:
    inventory = collect(Context(root=volume, live=False), ["windows"])
    assert by_id(list(inventory.apps), "WeChat")[0].device == str(volume)
    assert len(inventory.errors) == 2


@pytest.mark.parametrize("encoding", ["bogus", "shift_jis"])
def test_a_manifest_in_an_unknown_encoding_costs_its_display_name_only(
    volume: Path, collected, tmp_path: Path, encoding: str,
) -> None:
    copy = tmp_path / "volume"
    shutil.copytree(volume, copy, symlinks=True)
    manifest = copy / "Program Files" / "WindowsApps" / CALCULATOR / "AppxManifest.xml"
    manifest.write_text(f'<?xml version="1.0" encoding="{encoding}"?><Package/>', encoding="utf-8")
    result = WindowsCollector().collect(Context(root=copy, live=False))
    assert result.errors == collected.errors
    assert sorted(a.id for a in result.apps) == sorted(a.id for a in collected.apps)
