"""Build registry hives for tests and benchmarks from the real hives in tests/fixtures/windows.

Nothing here writes the hive format itself: a real hive (from the regipy project's test data,
taken from real Windows machines) is copied and keys are merged into the copy with the real
`hivexregedit --merge` (Debian package libwin-hivex-perl), from a .reg file in the format
regedit exports. Strings are written as hex(1) (UTF-16LE), as regedit does for non-ASCII text.
"""

from __future__ import annotations

import lzma
import os
import subprocess
from pathlib import Path
from typing import Mapping, Union

from tests.tools import require_tool

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "windows"
TIMEOUT = 300

Value = Union[str, int, list]
Keys = Mapping[str, Mapping[str, Value]]
"""Key path (backslashes, relative to the hive root) -> value name -> str (REG_SZ),
int (REG_DWORD) or list of str (REG_MULTI_SZ)."""


def hivexregedit() -> str:
    """Return the hivexregedit path (libwin-hivex-perl); skip when missing, fail in CI."""
    return require_tool("hivexregedit")


def fixture_hive(name: str, dest: Path) -> Path:
    """Decompress the shared fixture `<name>.xz` to `dest` and return `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(lzma.decompress((FIXTURES / f"{name}.xz").read_bytes()))
    return dest


def _hex(data: bytes) -> str:
    return ",".join(f"{b:02x}" for b in data)


def _value(name: str, value: Value) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, list)):
        raise TypeError(f"unsupported value for {name}: {value!r}")
    if isinstance(value, int):
        return f'"{name}"=dword:{value:08x}'
    if isinstance(value, list):
        return f'"{name}"=hex(7):{_hex("".join(v + chr(0) for v in value).encode("utf-16-le") + bytes(2))}'
    return f'"{name}"=hex(1):{_hex((value + chr(0)).encode("utf-16-le"))}'


def reg_text(prefix: str, keys: Keys, delete: tuple[str, ...] = ()) -> str:
    """Return a .reg document creating `keys` (and every missing parent key) under `prefix`."""
    lines = ["Windows Registry Editor Version 5.00", ""]
    lines += [f"[-{prefix}\\{path}]\n" for path in delete]
    made: set[str] = set()
    for path, values in keys.items():
        parts = path.split("\\")
        for depth in range(1, len(parts)):
            parent = "\\".join(parts[:depth])
            if parent.casefold() not in made:
                made.add(parent.casefold())
                lines += [f"[{prefix}\\{parent}]", ""]
        made.add(path.casefold())
        lines.append(f"[{prefix}\\{path}]")
        lines += [_value(name, value) for name, value in values.items()]
        lines.append("")
    return "\n".join(lines) + "\n"


def merge(hive: Path, keys: Keys, delete: tuple[str, ...] = ()) -> Path:
    """Merge `keys` into the hive file (deleting the `delete` keys first) with hivexregedit."""
    prefix = "HKEY_LOCAL_MACHINE\\HIVE"
    regfile = hive.with_name(hive.name + ".reg")
    regfile.write_text(reg_text(prefix, keys, delete), encoding="ascii")
    subprocess.run([hivexregedit(), "--merge", "--prefix", prefix, str(hive), str(regfile)],
                   check=True, timeout=TIMEOUT, capture_output=True)
    regfile.unlink()
    return hive


def empty_classes_hive(dest: Path) -> Path:
    """Return a hive to stand in for a UsrClass.dat: the real, small user hive NTUSER.DAT with
    its root keys deleted (a UsrClass.dat is a hive of the same format with other keys)."""
    fixture_hive("NTUSER.DAT", dest)
    roots = ("AppEvents", "Console", "Control Panel", "Environment", "EUDC", "Identities",
             "Keyboard Layout", "Network", "Printers", "Software", "System")
    return merge(dest, {}, delete=roots)


UNINSTALL = r"Microsoft\Windows\CurrentVersion\Uninstall"
USER_UNINSTALL = rf"Software\{UNINSTALL}"
PACKAGES = r"Local Settings\Software\Microsoft\Windows\CurrentVersion\AppModel\Repository\Packages"
PROVISIONED = r"Microsoft\Windows\CurrentVersion\Appx\AppxAllUserStore\Applications"
