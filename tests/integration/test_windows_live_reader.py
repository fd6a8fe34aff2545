"""The live path of the windows collector (winreg, profile discovery through ProfileList and
HKEY_USERS) on Linux: `winreg` cannot exist here, so a stand-in module serves the winreg calls
the reader makes (OpenKey, EnumKey, EnumValue, QueryInfoKey, as documented for Python's winreg)
from the same real hive files, mounted where Windows mounts them (HKLM\\SOFTWARE, HKU\\<SID>,
HKU\\<SID>_Classes)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from agent.inventory.base import Context
from agent.inventory.windows import PROFILE_LIST, HiveFileReader, LiveRegistryReader, WindowsCollector, profiles
from tests.hives import hivexregedit, merge
from tests.volumes import CONFIG, windows_volume

ANNA = "S-1-5-21-3623811015-3361044348-30300820-1001"
TONY = "S-1-5-21-3623811015-3361044348-30300820-1002"


class FakeWinreg(types.ModuleType):
    """winreg's read calls over hive files: `hives` maps (root, first key) to a hive file."""

    HKEY_LOCAL_MACHINE = "HKEY_LOCAL_MACHINE"
    HKEY_USERS = "HKEY_USERS"
    KEY_READ = 0x20019
    KEY_WOW64_64KEY = 0x0100

    def __init__(self, hives: dict[tuple[str, str], Path]) -> None:
        super().__init__("winreg")
        self._hives = {(root, name.casefold()): (name, HiveFileReader(path)) for (root, name), path in hives.items()}

    def OpenKey(self, key: Any, sub_key: str, reserved: int = 0, access: int = KEY_READ) -> Any:  # noqa: N802
        """Return a handle: (root, None) for a root key, else (root, (hive reader, regipy key))."""
        parts = [p for p in sub_key.split("\\") if p]
        if isinstance(key, str) or key[1] is None:  # a root key: its children are the mounted hives
            root = key if isinstance(key, str) else key[0]
            if not parts:
                return (root, None)
            mounted = self._hives.get((root, parts[0].casefold()))
            if mounted is None:
                raise FileNotFoundError(2, "The system cannot find the file specified")
            reader = mounted[1]
            key, parts = (root, (reader, reader.open(""))), parts[1:]
        root, (reader, node) = key
        for part in parts:
            node = next((sub for name, sub in reader.subkeys(node) if name.casefold() == part.casefold()), None)
            if node is None:
                raise FileNotFoundError(2, "The system cannot find the file specified")
        return (root, (reader, node))

    def _children(self, handle: Any) -> list[tuple[str, Any]]:
        root, node = handle
        if node is None:
            return [(name, None) for (r, _), (name, _reader) in self._hives.items() if r == root]
        reader, current = node
        return list(reader.subkeys(current))

    def EnumKey(self, key: Any, index: int) -> str:  # noqa: N802
        return self._children(key)[index][0]

    def EnumValue(self, key: Any, index: int) -> tuple[str, Any, int]:  # noqa: N802
        reader, current = key[1]
        raw = list(current.iter_values())[index]
        return raw.name, raw.value, 1

    def QueryInfoKey(self, key: Any) -> tuple[int, int, int]:  # noqa: N802
        values = 0 if key[1] is None else len(list(key[1][1].iter_values()))
        return len(self._children(key)), values, 0


@pytest.fixture()
def live_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hivexregedit()
    root = windows_volume(tmp_path)
    software = root.joinpath(*CONFIG)
    merge(software, {
        rf"{PROFILE_LIST}\{ANNA}": {"ProfileImagePath": str(root / "Users" / "anna")},
        rf"{PROFILE_LIST}\{TONY}": {"ProfileImagePath": str(root / "Users" / "tony")},
        rf"{PROFILE_LIST}\S-1-5-18": {"ProfileImagePath": r"%systemroot%\system32\config\systemprofile"},
    })
    anna = root / "Users" / "anna"
    monkeypatch.setitem(sys.modules, "winreg", FakeWinreg({
        ("HKEY_LOCAL_MACHINE", "SOFTWARE"): software,
        ("HKEY_USERS", ANNA): anna / "NTUSER.DAT",  # anna is logged on: her hives are loaded
        ("HKEY_USERS", f"{ANNA}_Classes"): anna / "AppData" / "Local" / "Microsoft" / "Windows" / "UsrClass.dat",
    }))
    return root


def test_profiles_are_people_from_profile_list(live_windows: Path) -> None:
    found = profiles(LiveRegistryReader("HKEY_LOCAL_MACHINE", "SOFTWARE"))
    assert [sid for sid, _ in found] == [ANNA, TONY]  # not S-1-5-18, the system's own profile


def test_live_collect_reads_loaded_hives_and_files_of_users_not_logged_on(live_windows: Path) -> None:
    result = WindowsCollector().collect(Context(live=True))
    assert result.errors == []
    seen = {(a.id, a.user, a.extra_value("hive")) for a in result.apps}
    assert ("WeChat", "", "HKEY_LOCAL_MACHINE\\SOFTWARE") in seen
    assert ("CapCut", "anna", f"HKEY_USERS\\{ANNA}") in seen
    assert ("BytedancePte.Ltd.TikTok", "anna", f"HKEY_USERS\\{ANNA}_Classes") in seen
    assert ("GitHubDesktop", "tony", str(live_windows / "Users" / "tony" / "NTUSER.DAT")) in seen


def test_live_reader_needs_windows() -> None:
    if sys.platform == "win32":
        pytest.skip("winreg exists here")
    with pytest.raises(ModuleNotFoundError):
        LiveRegistryReader("HKEY_LOCAL_MACHINE", "SOFTWARE")
