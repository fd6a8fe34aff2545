"""Disk layouts for the Windows and macOS collectors: a Windows volume of real hives (with keys
merged in by hivexregedit) and a macOS volume of .app bundles whose Info.plist files plistlib
writes in Apple's binary and XML formats."""

from __future__ import annotations

import plistlib
from pathlib import Path

from tests.hives import (
    PACKAGES, PROVISIONED, UNINSTALL, USER_UNINSTALL, empty_classes_hive, fixture_hive, merge,
)

CONFIG = ("Windows", "System32", "config", "SOFTWARE")
MSI_CODE = "{6D3B1A5C-0E2F-4C7A-9B1D-3E5F7A9C1B2D}"
QQ_CODE = "{052CFB79-9D62-42E3-8A15-DE66C2C97C3E}"
TIKTOK = "BytedancePte.Ltd.TikTok_1.0.17.0_x64__6yccndn6064se"
TIKTOK_SCALE = "BytedancePte.Ltd.TikTok_1.0.17.0_neutral_split.scale-100_6yccndn6064se"
CALCULATOR = "Microsoft.WindowsCalculator_11.2210.0.0_x64__8wekyb3d8bbwe"
WINDOWSAPPS = r"C:\Program Files\WindowsApps"

MACHINE_KEYS = {
    # WeChat 3.x: an x86 NSIS installer, so its key sits in the 32-bit view (winget Tencent.WeChat).
    rf"WOW6432Node\{UNINSTALL}\WeChat": {
        "DisplayName": "微信", "DisplayVersion": "3.9.12.51", "Publisher": "腾讯科技(深圳)有限公司",
        "InstallLocation": r"C:\Program Files (x86)\Tencent\WeChat",
        "UninstallString": r'"C:\Program Files (x86)\Tencent\WeChat\Uninstall.exe"',
    },
    # QQ 9.x: ARP entry as winget's Tencent.QQ manifests record it (an MSI product code, 32-bit).
    rf"WOW6432Node\{UNINSTALL}\{QQ_CODE}": {
        "DisplayName": "腾讯QQ", "DisplayVersion": "9.6.7.28807", "Publisher": "腾讯科技(深圳)有限公司",
        "WindowsInstaller": 1, "UninstallString": f"MsiExec.exe /X{QQ_CODE}",
    },
    # One MSI product registered in both views: one install, seen twice.
    rf"{UNINSTALL}\{MSI_CODE}": {
        "DisplayName": "Contoso Agent", "DisplayVersion": "2.4.1", "Publisher": "Contoso",
        "WindowsInstaller": 1, "UninstallString": f"MsiExec.exe /X{MSI_CODE}",
    },
    rf"WOW6432Node\{UNINSTALL}\{MSI_CODE}": {
        "DisplayName": "Contoso Agent", "DisplayVersion": "2.4.1", "Publisher": "Contoso",
        "WindowsInstaller": 1, "UninstallString": f"MsiExec.exe /X{MSI_CODE}",
    },
    rf"{UNINSTALL}\HiddenRuntime": {"DisplayName": "Hidden Runtime", "SystemComponent": 1},
    rf"{UNINSTALL}\KB5002110_Office": {
        "DisplayName": "Security Update for Microsoft Office (KB5002110)", "ParentKeyName": "Office16.PROPLUS",
        "ParentDisplayName": "Microsoft Office Professional Plus 2016",
    },
    rf"{UNINSTALL}\KB4023057": {"DisplayName": "Update for Windows (KB4023057)", "ReleaseType": "Update"},
    rf"{UNINSTALL}\NoName": {"UninstallString": r"C:\Windows\orphan.exe"},
    rf"{PROVISIONED}\{CALCULATOR}": {"Path": rf"{WINDOWSAPPS}\{CALCULATOR}\AppxManifest.xml"},
}
USER_KEYS = {
    # CapCut installs per user (winget ByteDance.CapCut: Scope user, ProductCode CapCut).
    rf"{USER_UNINSTALL}\CapCut": {
        "DisplayName": "CapCut", "DisplayVersion": "8.6.0.3667", "Publisher": "Bytedance Pte. Ltd.",
        "InstallLocation": r"C:\Users\anna\AppData\Local\CapCut",
        "UninstallString": r'"C:\Users\anna\AppData\Local\CapCut\uninst.exe"',
        "QuietUninstallString": r'"C:\Users\anna\AppData\Local\CapCut\uninst.exe" /S',
    },
}
CLASSES_KEYS = {
    rf"{PACKAGES}\{TIKTOK}": {
        "DisplayName": "@{BytedancePte.Ltd.TikTok_1.0.17.0_x64__6yccndn6064se?ms-resource://BytedancePte.Ltd.TikTok/Resources/AppName}",
        "PackageRootFolder": rf"{WINDOWSAPPS}\{TIKTOK}",
    },
    rf"{PACKAGES}\{TIKTOK_SCALE}": {"PackageRootFolder": rf"{WINDOWSAPPS}\{TIKTOK_SCALE}"},
}
MANIFEST = """<?xml version="1.0" encoding="utf-8"?>
<Package xmlns="http://schemas.microsoft.com/appx/manifest/foundation/windows10">
  <Identity Name="Microsoft.WindowsCalculator" Publisher="CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US" Version="11.2210.0.0" ProcessorArchitecture="x64" />
  <Properties>
    <DisplayName>Windows Calculator</DisplayName>
    <PublisherDisplayName>Microsoft Corporation</PublisherDisplayName>
  </Properties>
</Package>
"""


def windows_volume(root: Path) -> Path:
    """Lay out a Windows volume at `root` and return it:

    - Windows/System32/config/SOFTWARE: the real partial SOFTWARE hive + MACHINE_KEYS
    - Users/tony: the real user hive with per-user Uninstall keys, as it is
    - Users/vibranium: the real user hive with no Uninstall key, as it is
    - Users/anna: a copy of that hive + CapCut, and a UsrClass.dat with TikTok (+ its scale package)
    - Users/broken: the real damaged hive (a SYSTEM hive) as NTUSER.DAT
    - Users/cut: the first 64 KiB of tony's hive (a truncated copy)
    - Users/Default: a template profile (a copy of tony's hive), which is no person's
    - Program Files/WindowsApps/<calculator>/AppxManifest.xml
    """
    merge(fixture_hive("ntuser_software_partial", root.joinpath(*CONFIG)), MACHINE_KEYS)
    users = root / "Users"
    tony = fixture_hive("NTUSER_with_winscp.DAT", users / "tony" / "NTUSER.DAT")
    fixture_hive("NTUSER.DAT", users / "vibranium" / "NTUSER.DAT")
    merge(fixture_hive("NTUSER.DAT", users / "anna" / "NTUSER.DAT"), USER_KEYS)
    classes = users / "anna" / "AppData" / "Local" / "Microsoft" / "Windows" / "UsrClass.dat"
    classes.parent.mkdir(parents=True)
    merge(empty_classes_hive(classes), CLASSES_KEYS)
    fixture_hive("corrupted_system_hive", users / "broken" / "NTUSER.DAT")
    (users / "cut").mkdir()
    (users / "cut" / "NTUSER.DAT").write_bytes(tony.read_bytes()[:65536])
    (users / "Default").mkdir()
    (users / "Default" / "NTUSER.DAT").write_bytes(tony.read_bytes())
    (users / "Public").mkdir()
    manifest = root / "Program Files" / "WindowsApps" / CALCULATOR / "AppxManifest.xml"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(MANIFEST, encoding="utf-8")
    return root


def app_bundle(folder: Path, name: str, info: dict | None, fmt: plistlib.PlistFormat = plistlib.FMT_XML) -> Path:
    """Create folder/name.app with Contents/Info.plist (in `fmt`) and Contents/MacOS/, and return it."""
    bundle = folder / f"{name}.app"
    (bundle / "Contents" / "MacOS").mkdir(parents=True)
    if info is not None:
        with (bundle / "Contents" / "Info.plist").open("wb") as handle:
            plistlib.dump(info, handle, fmt=fmt)
    return bundle


def info(ident: str, name: str, short: str, build: str, **more: str) -> dict:
    """Return a minimal Info.plist dictionary as Xcode writes one."""
    return {"CFBundleIdentifier": ident, "CFBundleName": name, "CFBundleShortVersionString": short,
            "CFBundleVersion": build, "CFBundleExecutable": name, "CFBundlePackageType": "APPL", **more}


def macos_volume(root: Path) -> Path:
    """Lay out a macOS volume at `root` and return it (see the test module for what each case is)."""
    apps = root / "Applications"
    wechat = app_bundle(apps, "WeChat", info("com.tencent.xinWeChat", "WeChat", "3.8.10", "28632",
                                              CFBundleDisplayName="微信"), plistlib.FMT_BINARY)
    app_bundle(wechat / "Contents" / "Library" / "LoginItems", "WeChatHelper",
               info("com.tencent.xinWeChat.helper", "WeChatHelper", "1.0", "1"))
    app_bundle(apps / "Utilities", "Terminal", info("com.apple.Terminal", "Terminal", "2.14", "455.1"))
    broken = app_bundle(apps, "Broken", None)
    (broken / "Contents" / "Info.plist").write_bytes(b"<?xml version=\"1.0\"?><plist><dict><key>CFBundle")
    app_bundle(root / "Users" / "Shared" / "Applications", "Firefox",
               info("org.mozilla.firefox", "Firefox", "133.0", "13324.11.25"), plistlib.FMT_BINARY)
    downloads = root / "Users" / "alice" / "Downloads"
    app_bundle(downloads, "CapCut", info("com.lemon.lvoverseas", "CapCut", "5.3.0", "2037"))
    app_bundle(downloads / "unzipped" / "deeper", "TooDeep", info("com.example.toodeep", "TooDeep", "1", "1"))
    app_bundle(root / "Users" / "bob" / "Applications", "Notes Plus", info("com.example.notesplus", "Notes Plus", "7.3", "73"),
               plistlib.FMT_BINARY)
    (root / "opt" / "homebrew" / "Caskroom" / "wechat" / "3.8.10,28632").mkdir(parents=True)
    (root / "usr" / "local" / "Caskroom" / "firefox" / "133.0").mkdir(parents=True)
    return root
