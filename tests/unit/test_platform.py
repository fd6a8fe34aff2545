"""The platform facade's pure and POSIX parts: which OS module is chosen, that only agent/platform
imports OS-only modules, flock semantics, the config-file watch, the trust store choice."""

from __future__ import annotations

import ast
import contextlib
import os
import ssl
import sys
import threading
import types
from pathlib import Path

import pytest

import agent.platform as host
from agent.platform import _linux, _macos, _posix, _select, _windows, trust
from agent.platform.watch import FileWatch

AGENT = Path(__file__).resolve().parents[2] / "agent"
OS_ONLY = {"fcntl", "pwd", "grp", "termios", "winreg", "msvcrt", "_winapi", "win32api", "win32service"}


def test_each_platform_gets_its_module() -> None:
    assert _select("linux") is _linux and _select("darwin") is _macos and _select("win32") is _windows
    assert _select("freebsd14") is _linux
    assert {m.NAME for m in (_linux, _macos, _windows)} == set(host.SERVICE_MANAGERS)


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside a function) by one source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_outside_the_platform_package_imports_an_os_only_module() -> None:
    offenders = {}
    for path in AGENT.rglob("*.py"):
        if "platform" in path.relative_to(AGENT).parts:
            continue
        text = path.read_text(encoding="utf-8")
        found = {name for name in OS_ONLY if f"import {name}" in text or f"from {name} " in text}
        found -= {"winreg"} if path.name == "windows.py" and "inventory" in path.parts else set()
        if found:
            offenders[str(path.relative_to(AGENT))] = sorted(found)
    assert offenders == {}


def test_the_platform_modules_import_os_only_modules_only_inside_functions() -> None:
    for path in (AGENT / "platform").glob("*.py"):
        assert not _top_level_imports(path) & OS_ONLY, path.name


def test_flock_lets_one_holder_in_and_the_probe_sees_it(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with open(lock, "a+") as first, open(lock, "a+") as second, open(lock, "a+") as probe:
        assert not _posix.is_locked(probe)
        assert _posix.try_lock(first)
        assert not _posix.try_lock(second)
        assert _posix.is_locked(probe)
    with open(lock, "a+") as again:
        assert _posix.try_lock(again), "closing the holder releases the lock"


def test_the_file_watch_calls_back_once_per_change(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("a: 1\n")
    changed = threading.Event()
    calls: list[int] = []
    watch = FileWatch(config, lambda: (calls.append(1), changed.set()), poll=0.05)
    watch.start()
    try:
        config.write_text("a: 22\n")
        assert changed.wait(30)
        changed.clear()
        assert not changed.wait(0.3), "an unchanged file calls back no more"
        config.unlink()
        assert not changed.wait(0.3), "a file being replaced is not a change until it is back"
    finally:
        watch.stop()
    assert calls == [1]


def test_linux_trusts_the_file_openssl_uses_and_honours_ssl_cert_file(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert trust.system_trust("linux") == str(bundle)
    monkeypatch.delenv("SSL_CERT_FILE")
    expected = ssl.get_default_verify_paths().cafile or next(
        (p for p in trust.DISTRIBUTION_BUNDLES if os.path.isfile(p)), None)
    assert trust.system_trust("linux") == expected
    assert "certifi" not in str(trust.system_trust("linux"))


def test_no_proc_means_no_desktop_sessions(tmp_path: Path) -> None:
    from agent.enforce.notify import desktop_sessions

    assert desktop_sessions(str(tmp_path / "no-proc")) == []


def test_the_windows_lock_leaves_the_pid_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.without_posix import msvcrt_stand_in

    monkeypatch.setitem(sys.modules, "msvcrt", msvcrt_stand_in())
    lock = tmp_path / "appban.lock"
    with open(lock, "a+", encoding="ascii") as holder, open(lock, "a+", encoding="ascii") as other:
        assert _windows.try_lock(holder)
        holder.write("4242\n")
        holder.flush()
        assert not _windows.try_lock(other) and _windows.is_locked(other)
        other.seek(0)
        assert other.read().strip() == "4242", "the locked byte lies past the pid"
        assert holder.tell() == 5, "locking leaves the file position where it was"


def winreg_stand_in(values: dict[tuple[str, str], str]) -> types.ModuleType:
    """A winreg with the calls _windows uses, as the Python docs describe them (OpenKey is a
    context manager; a missing key or value raises OSError, FileNotFoundError in practice)."""
    module = types.ModuleType("winreg")
    module.HKEY_LOCAL_MACHINE, module.KEY_READ, module.KEY_WOW64_64KEY = 0x80000002, 0x20019, 0x0100
    opened: list[int] = []

    @contextlib.contextmanager
    def open_key(hive: int, path: str, reserved: int, access: int):  # noqa: ANN202
        if hive != module.HKEY_LOCAL_MACHINE or not access & module.KEY_WOW64_64KEY:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        opened.append(access)
        yield path

    def query_value_ex(key: str, name: str) -> tuple[str, int]:
        if (key, name) not in values:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return values[(key, name)], 1  # REG_SZ

    module.OpenKey, module.QueryValueEx = open_key, query_value_ex
    return module


def test_windows_reads_machine_guid_from_the_64_bit_view(monkeypatch: pytest.MonkeyPatch) -> None:
    guid = "6E4B9C1A-52F3-4D8E-9B7A-1C2D3E4F5A6B"
    monkeypatch.setitem(sys.modules, "winreg", winreg_stand_in({(_windows.MACHINE_GUID_KEY, "MachineGuid"): guid}))
    assert _windows.live_device_id(None) == guid.lower()
    monkeypatch.setitem(sys.modules, "winreg", winreg_stand_in({}))
    assert _windows.live_device_id(None) == ""


def test_the_default_paths_are_where_each_package_puts_them() -> None:
    import plistlib
    from xml.etree import ElementTree

    packaging = AGENT.parent / "packaging"
    daemon = plistlib.loads((packaging / "macos/org.appban.agent.plist").read_bytes())["ProgramArguments"]
    assert daemon[daemon.index("--config") + 1] == _macos.CONFIG_FILE
    assert daemon[daemon.index("--state-dir") + 1] == _macos.STATE_DIR
    winsw = ElementTree.parse(packaging / "windows/appban-service.xml").getroot().findtext("arguments")
    data = r"C:\ProgramData"  # what %ProgramData% expands to, when the environment does not say
    assert f'--config "{_windows.CONFIG_FILE.replace(data, "%ProgramData%")}"' in winsw
    assert f'--state-dir "{_windows.STATE_DIR.replace(data, "%ProgramData%")}"' in winsw
    unit = (packaging / "systemd/appban.service").read_text()
    assert f"--config {_linux.CONFIG_FILE} --state-dir {_linux.STATE_DIR}" in unit
