"""Pure rules of the windows collector and its uninstall commands: which Add/Remove Programs
entries count, MSI product codes, package full names, 32/64-bit duplicates, command lines."""

from __future__ import annotations

import pytest

from agent.enforce.windows import (
    UninstallRefused, msiexec_argv, remove_appx_argv, split_command_line, uninstall_argv,
)
from agent.inventory.windows import (
    dedupe, is_hidden_entry, msi_product_code, package_app, parse_package_full_name, uninstall_app,
)
from agent.model import App

CODE = "{6D3B1A5C-0E2F-4C7A-9B1D-3E5F7A9C1B2D}"


def values(**kw) -> dict:
    return {k.casefold(): v for k, v in kw.items()}


@pytest.mark.parametrize("entry, hidden", [
    (values(DisplayName="App"), False),
    (values(DisplayName="App", SystemComponent=0), False),
    (values(DisplayName="App", SystemComponent=1), True),
    (values(DisplayName="KB1", ParentKeyName="Office16"), True),
    (values(DisplayName="KB2", ReleaseType="Security Update"), True),
    (values(DisplayName="KB3", ReleaseType="Hotfix"), True),
    (values(DisplayName="Tool", ReleaseType="Product"), False),
    (values(DisplayName=""), True),
    (values(UninstallString="x.exe"), True),
])
def test_hidden_entries_are_those_add_remove_programs_hides(entry: dict, hidden: bool) -> None:
    assert is_hidden_entry(entry) is hidden


def test_msi_product_code_from_key_or_msiexec_command() -> None:
    assert msi_product_code(CODE, values(WindowsInstaller=1)) == CODE
    assert msi_product_code(CODE.lower(), values(WindowsInstaller=1)) == CODE
    assert msi_product_code(CODE, values()) == ""  # a GUID-named key of a non-MSI installer
    assert msi_product_code("Foo", values(UninstallString=f"MsiExec.exe /X{CODE}")) == CODE
    assert msi_product_code("Foo", values(UninstallString=f'"C:\\Windows\\System32\\msiexec.exe" /I {CODE.lower()}')) == CODE
    assert msi_product_code("Foo", values(UninstallString='"C:\\App\\unins000.exe"')) == ""


def test_package_full_names() -> None:
    parts = parse_package_full_name("BytedancePte.Ltd.TikTok_1.0.17.0_x64__6yccndn6064se")
    assert parts is not None
    assert (parts.name, parts.version, parts.architecture, parts.resource_id) == ("BytedancePte.Ltd.TikTok", "1.0.17.0", "x64", "")
    assert parts.family == "BytedancePte.Ltd.TikTok_6yccndn6064se"
    assert parse_package_full_name("Microsoft.Paint_11.0_neutral_~_8wekyb3d8bbwe").resource_id == "~"
    assert parse_package_full_name("NotAPackage") is None
    scale = package_app("A.B_1.0_neutral_split.scale-100_abcdefghijklm", {}, hive="h", scope="user", user="u",
                        manifest=lambda folder: {})
    assert scale is None


def test_uninstall_app_fields_and_aliases() -> None:
    app = uninstall_app("WeChat", values(DisplayName="微信", DisplayVersion="3.9", Publisher="腾讯", QuietUninstallString=""),
                        hive="/SOFTWARE", key_path="k", scope="machine", user="", view="32-bit")
    assert app is not None
    assert (app.id, app.name, app.aliases) == ("WeChat", "微信", ("微信",))
    assert app.extra_value("quiet_uninstall") == ""  # empty values are left out
    assert app.extra_value("view") == "32-bit"


def test_dedupe_merges_views_but_keeps_users_and_versions_apart() -> None:
    def arp(view: str, user: str = "", version: str = "1.0") -> App:
        return App(source="windows", id=CODE, name="Tool", version=version, user=user,
                   extra=(("kind", "arp"), ("view", view)))
    merged = dedupe([arp("64-bit"), arp("32-bit"), arp("32-bit", version="0.9"), arp("", user="anna")])
    assert [(a.version, a.user, a.extra_value("view")) for a in merged] == [
        ("1.0", "", "64-bit,32-bit"), ("0.9", "", "32-bit"), ("1.0", "anna", "")]


@pytest.mark.parametrize("line, argv", [
    ('"C:\\Program Files\\App\\uninst.exe" /S', ["C:\\Program Files\\App\\uninst.exe", "/S"]),
    ("C:\\Program Files\\App\\uninst.exe /S /norestart", ["C:\\Program Files\\App\\uninst.exe", "/S", "/norestart"]),
    ('"C:\\Users\\tony\\AppData\\Local\\GitHubDesktop\\Update.exe" --uninstall -s',
     ["C:\\Users\\tony\\AppData\\Local\\GitHubDesktop\\Update.exe", "--uninstall", "-s"]),
    ('"C:\\x\\setup.exe" /uninstall /log "C:\\Temp\\my log.txt"', ["C:\\x\\setup.exe", "/uninstall", "/log", "C:\\Temp\\my log.txt"]),
    ('"C:\\x\\a.exe" "say \\"hi\\"" C:\\dir\\', ["C:\\x\\a.exe", 'say "hi"', "C:\\dir\\"]),
    ('"C:\\x\\a.exe" ""', ["C:\\x\\a.exe", ""]),
    ("", []),
])
def test_split_command_line_as_windows_does(line: str, argv: list[str]) -> None:
    assert split_command_line(line) == argv


def test_uninstall_argv_choices() -> None:
    msi = App(source="windows", id=CODE, extra=(("kind", "arp"), ("msi_product_code", CODE)))
    assert uninstall_argv(msi) == ["msiexec.exe", "/x", CODE, "/qn", "/norestart"]
    quiet = App(source="windows", id="CapCut", extra=(("kind", "arp"), ("quiet_uninstall", '"C:\\c\\uninst.exe" /S')))
    assert uninstall_argv(quiet) == ["C:\\c\\uninst.exe", "/S"]
    loud = App(source="windows", id="WeChat", extra=(("kind", "arp"), ("uninstall", '"C:\\w\\Uninstall.exe"')))
    with pytest.raises(UninstallRefused, match="interactive"):
        uninstall_argv(loud)
    full = "BytedancePte.Ltd.TikTok_1.0.17.0_x64__6yccndn6064se"
    store = App(source="windows", id="BytedancePte.Ltd.TikTok", extra=(("kind", "msix"), ("package_full_name", full), ("scope", "user")))
    assert uninstall_argv(store)[-1] == f"Remove-AppxPackage -Package '{full}' -AllUsers"
    provisioned = App(source="windows", id="x", extra=(("kind", "msix"), ("package_full_name", full), ("scope", "provisioned")))
    assert uninstall_argv(provisioned)[-1] == f"Remove-AppxProvisionedPackage -Online -PackageName '{full}'"
    with pytest.raises(UninstallRefused):
        uninstall_argv(App(source="dpkg", id="wechat"))


def test_builders_refuse_what_would_not_be_a_plain_name() -> None:
    with pytest.raises(UninstallRefused):
        msiexec_argv("{not-a-guid}; rm")
    with pytest.raises(UninstallRefused):
        remove_appx_argv("Evil_1.0_x64__abcdefghijklm'; Remove-Item C:\\ -Recurse; '")


def test_a_number_stored_with_an_odd_registry_type_reads_as_zero() -> None:
    entry = {"displayname": "TikTok", "systemcomponent": ["1"], "windowsinstaller": None}
    assert is_hidden_entry(entry) is False
    assert msi_product_code("{0F8C5E4B-3B4A-4F4A-9B0E-6C1D2E3F4A5B}", {"windowsinstaller": ["1"]}) == ""


def test_dedupe_never_merges_away_what_the_matcher_reads() -> None:
    def arp(view: str, **facts: str) -> App:
        return App(source="windows", id=CODE, name="Tool", version="1.0", extra=(("kind", "arp"), ("view", view)),
                   **facts)
    merged = dedupe([arp("64-bit", publisher="Acme"), arp("32-bit", publisher="Bytedance Ltd.", path=r"C:\TikTok")])
    assert [(a.publisher, a.path) for a in merged] == [("Acme", ""), ("Bytedance Ltd.", r"C:\TikTok")]
