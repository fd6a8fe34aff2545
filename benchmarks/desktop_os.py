"""Benchmarks for the Windows and macOS collectors (issue 8). Prints figures; asserts nothing.

1. a Windows volume: a SOFTWARE hive with 2,000 Uninstall entries (1,000 in each registry view)
   and 50 user profiles, each with an NTUSER.DAT (20 per-user installs) and a UsrClass.dat
   (30 Store packages). The hives are real hives with keys merged in by hivexregedit; they are
   built once and cached under /tmp/appban-bench-desktop (delete it to rebuild);
2. a macOS volume of 1,000 .app bundles (binary and XML Info.plist) in /Applications, its
   subfolders and 10 users' Downloads.

Run: .venv/bin/python benchmarks/desktop_os.py   (needs hivexregedit: libwin-hivex-perl)
"""

from __future__ import annotations

import plistlib
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.inventory.base import Context  # noqa: E402
from agent.inventory.macos import MacosCollector  # noqa: E402
from agent.inventory.windows import WindowsCollector  # noqa: E402
from tests.hives import (  # noqa: E402
    PACKAGES, UNINSTALL, USER_UNINSTALL, empty_classes_hive, fixture_hive, merge,
)
from tests.volumes import app_bundle, info  # noqa: E402

CACHE = Path("/tmp/appban-bench-desktop")
MACHINE_ENTRIES = 2000
USERS = 50
USER_ENTRIES = 20
USER_PACKAGES = 30
BUNDLES = 1000


def entry(i: int, scope: str) -> dict:
    return {"DisplayName": f"Bench {scope} App {i}", "DisplayVersion": f"{i % 9}.{i % 13}.{i}",
            "Publisher": f"Vendor {i % 97}", "InstallLocation": f"C:\\Program Files\\Bench{i}",
            "UninstallString": f'"C:\\Program Files\\Bench{i}\\uninst.exe"',
            "QuietUninstallString": f'"C:\\Program Files\\Bench{i}\\uninst.exe" /S'}


def windows_volume() -> Path:
    """Return the cached benchmark volume, building it first when it is missing."""
    root = CACHE / "windows"
    done = root / ".complete"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    half = MACHINE_ENTRIES // 2
    keys = {f"{UNINSTALL}\\Bench{i}": entry(i, "machine") for i in range(half)}
    keys.update({f"WOW6432Node\\{UNINSTALL}\\Bench32-{i}": entry(i, "x86") for i in range(half)})
    merge(fixture_hive("ntuser_software_partial", root / "Windows" / "System32" / "config" / "SOFTWARE"), keys)
    user = merge(fixture_hive("NTUSER.DAT", CACHE / "user.DAT"),
                 {f"{USER_UNINSTALL}\\User{i}": entry(i, "user") for i in range(USER_ENTRIES)})
    classes = merge(empty_classes_hive(CACHE / "classes.DAT"), {
        f"{PACKAGES}\\Bench.Package{i}_1.{i}.0.0_x64__abcdefghijklm": {"PackageRootFolder": f"C:\\Program Files\\WindowsApps\\p{i}"}
        for i in range(USER_PACKAGES)})
    for n in range(USERS):
        home = root / "Users" / f"user{n:02d}"
        (home / "AppData" / "Local" / "Microsoft" / "Windows").mkdir(parents=True)
        shutil.copyfile(user, home / "NTUSER.DAT")
        shutil.copyfile(classes, home / "AppData" / "Local" / "Microsoft" / "Windows" / "UsrClass.dat")
    done.touch()
    print(f"built the Windows volume in {time.perf_counter() - started:.1f} s (cached in {root})")
    return root


def macos_volume() -> Path:
    """Return a fresh macOS volume of BUNDLES bundles (cheap to build, so never cached)."""
    root = CACHE / "macos"
    shutil.rmtree(root, ignore_errors=True)
    for i in range(BUNDLES):
        if i < 600:
            folder = root / "Applications"
        elif i < 800:
            folder = root / "Applications" / f"Suite{i % 20}"
        else:
            folder = root / "Users" / f"user{i % 10}" / "Downloads"
        fmt = plistlib.FMT_BINARY if i % 2 else plistlib.FMT_XML
        app_bundle(folder, f"App{i}", info(f"com.example.app{i}", f"App{i}", f"1.{i}", str(i)), fmt)
    return root


def timed(collector, root: Path, runs: int = 5) -> tuple[float, float, int, int]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = collector.collect(Context(root=root, live=False))
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times), len(result.apps), len(result.errors)


def main() -> None:
    win = windows_volume()
    median, best, apps, errors = timed(WindowsCollector(), win)
    print(f"windows: SOFTWARE with {MACHINE_ENTRIES:,} Uninstall entries + {USERS} users "
          f"({USER_ENTRIES} installs, {USER_PACKAGES} Store packages each): {apps:,} apps, {errors} errors, "
          f"median {median:.2f} s, best {best:.2f} s")
    mac = macos_volume()
    median, best, apps, errors = timed(MacosCollector(), mac)
    print(f"macos: {BUNDLES:,} app bundles: {apps:,} apps, {errors} errors, "
          f"median {median * 1000:.0f} ms, best {best * 1000:.0f} ms")


if __name__ == "__main__":
    main()
