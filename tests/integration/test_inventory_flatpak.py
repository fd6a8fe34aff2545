"""The flatpak collector against installations made by the real flatpak (1.14, Debian): a tiny
runtime and two apps are built with `flatpak build-export`/`build-init`/`build-finish` into a
local repository, then installed from it into a system installation (FLATPAK_SYSTEM_DIR) and a
user's (FLATPAK_USER_DIR) inside a throwaway root. `flatpak list` on those installations is the
reference the collector is compared with.

Not as root, flatpak would install system-wide through its D-Bus system helper, and asks
accountsservice (system bus) for parental controls; then the system installation is written by
the same code through `--user` pointed at its folder, and a private dbus-daemon stands in for the
system bus (no accountsservice there means no parental controls, as flatpak reads it)."""

from __future__ import annotations

import gzip
import os
import stat
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from agent.inventory import collect
from agent.inventory.flatpak import FlatpakCollector
from tests.conftest import require_tool
from tests.linux_roots import context, run

ARCH = {"x86_64": "x86_64", "aarch64": "aarch64"}.get(os.uname().machine, os.uname().machine)
METAINFO = """<?xml version="1.0" encoding="UTF-8"?>
<component type="desktop-application">
  <id>org.appban.Hello</id>
  <name>Hello Appban</name>
  <name xml:lang="fr">Bonjour Appban</name>
  <developer id="org.appban"><name>Appban Testers</name></developer>
  <releases><release version="2.5.1" date="2026-01-01"/><release version="2.4" date="2025-01-01"/></releases>
</component>
"""
COMPOSED = """<?xml version="1.0" encoding="UTF-8"?>
<components version="0.8" origin="flatpak">
  <component type="desktop-application">
    <id>org.appban.Two</id>
    <name>Two Appban</name>
    <developer_name>Two Devs</developer_name>
    <releases><release version="3.1" timestamp="1700000000"/></releases>
  </component>
</components>
"""
LAUNCHER = "[Desktop Entry]\nType=Application\nName={name}\nExec=hello\n"


def _flatpak_env(work: Path, root: Path) -> dict[str, str]:
    return {
        "FLATPAK_SYSTEM_DIR": str(root / "var/lib/flatpak"),
        "FLATPAK_USER_DIR": str(root / "home/alice/.local/share/flatpak"),
        "FLATPAK_CONFIG_DIR": str(work / "etc"), "FLATPAK_RUN_DIR": str(work / "run"),
        "XDG_DATA_HOME": str(work / "xdg"), "HOME": str(work),
    }


def _build_app(work: Path, env: dict[str, str], app_id: str, files: dict[str, str | bytes]) -> None:
    build = work / app_id
    run("flatpak", "build-init", build, app_id, "org.appban.Platform", "org.appban.Platform", "1", env=env)
    (build / "files/bin").mkdir(parents=True)
    (build / "files/bin/hello").write_text("#!/bin/sh\necho hello\n")
    (build / "files/bin/hello").chmod(0o755)
    for path, content in files.items():
        target = build / "files" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    run("flatpak", "build-finish", build, "--command", "hello", env=env)
    run("flatpak", "build-export", work / "repo", build, "stable", env=env)


@pytest.fixture(scope="module")
def system_bus() -> Iterator[dict[str, str]]:
    """Nothing as root; otherwise the address of a private bus standing in for the system bus."""
    if os.geteuid() == 0:
        yield {}
        return
    daemon = subprocess.Popen([require_tool("dbus-daemon"), "--session", "--nofork", "--print-address=1"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert daemon.stdout is not None
        yield {"DBUS_SYSTEM_BUS_ADDRESS": daemon.stdout.readline().strip()}
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def _system_scope(env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Return the flatpak option and environment that write the system installation."""
    if os.geteuid() == 0:
        return "--system", env
    return "--user", {**env, "FLATPAK_USER_DIR": env["FLATPAK_SYSTEM_DIR"]}


@pytest.fixture(scope="module")
def flatpak_root(tmp_path_factory: pytest.TempPathFactory, system_bus: dict[str, str]) -> tuple[Path, dict[str, str]]:
    require_tool("flatpak")
    work = tmp_path_factory.mktemp("flatpak")
    root = work / "root"
    (root / "home/alice").mkdir(parents=True)
    env = {**_flatpak_env(work, root), **system_bus}
    system, system_env = _system_scope(env)
    runtime = work / "runtime"
    (runtime / "files/bin").mkdir(parents=True)
    (runtime / "usr").mkdir()
    (runtime / "metadata").write_text(
        f"[Runtime]\nname=org.appban.Platform\nruntime=org.appban.Platform/{ARCH}/1\nsdk=org.appban.Platform/{ARCH}/1\n")
    run("flatpak", "build-export", "--runtime", work / "repo", runtime, "1", env=env)
    for scope, scope_env in ((system, system_env), ("--user", env)):
        run("flatpak", scope, "remote-add", "--no-gpg-verify", "appban-test", f"file://{work / 'repo'}", env=scope_env)
    run("flatpak", "--user", "install", "-y", "--noninteractive", "appban-test", "org.appban.Platform", env=env)
    _build_app(work, env, "org.appban.Hello", {
        "share/metainfo/org.appban.Hello.metainfo.xml": METAINFO,
        "share/applications/org.appban.Hello.desktop": LAUNCHER.format(name="Hello Appban"),
    })
    _build_app(work, env, "org.appban.Two", {
        "share/app-info/xmls/org.appban.Two.xml.gz": gzip.compress(COMPOSED.encode()),
        "share/applications/org.appban.Two.desktop": LAUNCHER.format(name="Two Launcher"),
    })
    run("flatpak", "--user", "install", "-y", "--noninteractive", "appban-test", "org.appban.Hello", env=env)
    run("flatpak", system, "install", "-y", "--noninteractive", "appban-test", "org.appban.Two", env=system_env)
    return root, env


def test_flatpak_collector_agrees_with_flatpak_list(flatpak_root: tuple[Path, dict[str, str]]) -> None:
    root, env = flatpak_root
    listed = run("flatpak", "list", "--app", "--columns=application,version,branch,origin,installation", env=env)
    expected = sorted(tuple(line.split("\t")) for line in listed.splitlines())
    apps = FlatpakCollector().collect(context(root)).apps
    got = sorted((a.id, a.version, a.extra_value("branch"), a.extra_value("origin"), a.extra_value("installation"))
                 for a in apps)
    # flatpak list shows versions only from composed AppStream data; the collector also reads
    # the app's own metainfo, so Hello has a version here that flatpak list leaves empty.
    assert [(g[0], *g[2:]) for g in got] == [(e[0], *e[2:]) for e in expected]
    assert {g[0]: g[1] for g in got} == {"org.appban.Hello": "2.5.1", "org.appban.Two": "3.1"}
    assert {e[0]: e[1] for e in expected} == {"org.appban.Hello": "", "org.appban.Two": "3.1"}


def test_flatpak_apps_carry_user_name_and_publisher(flatpak_root: tuple[Path, dict[str, str]]) -> None:
    root, _ = flatpak_root
    apps = {a.id: a for a in FlatpakCollector().collect(context(root)).apps}
    hello, two = apps["org.appban.Hello"], apps["org.appban.Two"]
    assert (hello.user, hello.name, hello.publisher) == ("alice", "Hello Appban", "Appban Testers")
    assert (two.user, two.name, two.publisher) == ("", "Two Appban", "Two Devs")
    assert hello.aliases == (f"app/org.appban.Hello/{ARCH}/stable",)
    assert hello.extra_value("runtime") == f"org.appban.Platform/{ARCH}/1"
    commit = hello.extra_value("commit")
    assert hello.path == f"/home/alice/.local/share/flatpak/app/org.appban.Hello/{ARCH}/stable/{commit}"
    assert (root / hello.path.lstrip("/") / "metadata").is_file()


def test_exported_launchers_fold_into_their_flatpak(flatpak_root: tuple[Path, dict[str, str]]) -> None:
    root, _ = flatpak_root
    inventory = collect(context(root), ["flatpak", "desktop"])
    assert not inventory.errors
    by_source = sorted((a.source, a.id, a.user, a.name) for a in inventory.apps)
    # Hello's launcher has the same name: folded. Two's launcher names it differently, so it stays
    # (marked with its owner) for `names` rules to see.
    assert by_source == [
        ("desktop", "org.appban.Two", "", "Two Launcher"),
        ("flatpak", "org.appban.Hello", "alice", "Hello Appban"),
        ("flatpak", "org.appban.Two", "", "Two Appban"),
    ]
    launcher = next(a for a in inventory.apps if a.source == "desktop")
    assert launcher.extra_value("owner") == "flatpak:org.appban.Two"


def _damaged(flatpak_root: tuple[Path, dict[str, str]], tmp_path: Path, glob: str, content: str | bytes | None) -> Path:
    """Copy the installations, replace the one file `glob` finds with `content` (None: keep it),
    and return the copy's root."""
    root, _ = flatpak_root
    copy = tmp_path / "root"
    run("cp", "-a", root, copy)
    if content is not None:
        target = next(copy.glob(glob))
        target.chmod(stat.S_IWUSR | stat.S_IRUSR)
        (target.write_bytes if isinstance(content, bytes) else target.write_text)(content)
    return copy


def test_broken_flatpak_metadata_is_one_error_and_other_apps_survive(
    flatpak_root: tuple[Path, dict[str, str]], tmp_path: Path,
) -> None:
    copy = _damaged(flatpak_root, tmp_path, "var/lib/flatpak/app/org.appban.Two/*/stable/active/metadata",
                    "[Application\nname=org.appban.Two\n")
    inventory = collect(context(copy), ["flatpak"])
    assert len(inventory.errors) == 1 and "not a valid keyfile" in inventory.errors[0].message
    assert [a.id for a in inventory.apps] == ["org.appban.Hello"]


def test_a_stray_file_in_an_installation_costs_nothing(
    flatpak_root: tuple[Path, dict[str, str]], tmp_path: Path,
) -> None:
    copy = _damaged(flatpak_root, tmp_path, "", None)
    (copy / "var/lib/flatpak/app/stray").write_text("not an app\n")
    inventory = collect(context(copy), ["flatpak"])
    assert inventory.errors == ()
    assert sorted(a.id for a in inventory.apps) == ["org.appban.Hello", "org.appban.Two"]


def test_corrupt_composed_appstream_falls_back_and_loses_no_app(
    flatpak_root: tuple[Path, dict[str, str]], tmp_path: Path,
) -> None:
    data = gzip.compress(COMPOSED.encode())
    copy = _damaged(  # a valid gzip header, then a broken deflate stream
        flatpak_root, tmp_path,
        "var/lib/flatpak/app/org.appban.Two/*/stable/active/files/share/app-info/xmls/org.appban.Two.xml.gz",
        data[:10] + b"\xff" * 30 + data[40:])
    inventory = collect(context(copy), ["flatpak"])
    assert inventory.errors == ()
    assert sorted(a.id for a in inventory.apps) == ["org.appban.Hello", "org.appban.Two"]


def test_a_metainfo_in_an_unknown_encoding_costs_its_facts_only(
    flatpak_root: tuple[Path, dict[str, str]], tmp_path: Path,
) -> None:
    copy = _damaged(
        flatpak_root, tmp_path,
        "home/alice/.local/share/flatpak/app/org.appban.Hello/*/stable/active/files/share/metainfo/*.xml",
        '<?xml version="1.0" encoding="bogus"?><component/>')
    inventory = collect(context(copy), ["flatpak"])
    assert inventory.errors == ()
    assert sorted((a.id, a.name) for a in inventory.apps) == [
        ("org.appban.Hello", "org.appban.Hello"), ("org.appban.Two", "Two Appban")]
