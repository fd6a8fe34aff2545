"""`appban inventory` as a subprocess on a mounted Linux tree with every kind of install: the
counts table per source and per user, `--source`, `--format json`, a missing root, and every
database unreadable (permission denied; as root the agent runs as `nobody` via setpriv, because
root reads any file): one error per collector, the rest of the inventory intact."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO

TIMEOUT = 60
DPKG_STATUS = """Package: zoom
Status: install ok installed
Priority: optional
Section: net
Installed-Size: 900000
Maintainer: Zoom Video Communications <support@zoom.us>
Architecture: amd64
Version: 6.0.2.4680
Description: Zoom
 video meetings

Package: old-thing
Status: deinstall ok config-files
Architecture: all
Version: 1.0

Package: half-done
Status: install reinstreq half-installed
Architecture: all
Version: 2.0

"""
SNAP_STATE = {"data": {"snaps": {"hello-world": {
    "type": "app", "active": True, "current": "29",
    "sequence": [{"name": "hello-world", "snap-id": "buPKUD3TKqCOgLEjjHx5kSiCpIs5cMuQ", "revision": "29"}]}}}}
APK = "P:musl\nV:1.2.4-r2\nA:x86_64\n\n"
PACMAN = "%NAME%\nfirefox\n\n%VERSION%\n121.0-1\n\n"


def appban(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = []
    if user is not None:
        entry = pwd.getpwnam(user)
        prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=TIMEOUT,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.DEVNULL, check=False,
    )


@pytest.fixture()
def tree() -> Iterator[Path]:
    """A Linux tree in a folder `nobody` can traverse (pytest's tmp_path is private to root)."""
    top = Path(tempfile.mkdtemp(prefix="appban-e2e-inventory-"))
    top.chmod(0o755)
    root = top / "root"
    files = {
        "var/lib/dpkg/status": DPKG_STATUS,
        "var/lib/snapd/state.json": json.dumps(SNAP_STATE),
        "snap/hello-world/29/meta/snap.yaml": "name: hello-world\nversion: 6.4\n",
        "lib/apk/db/installed": APK,
        "var/lib/pacman/local/firefox-121.0-1/desc": PACMAN,
        "var/lib/flatpak/app/org.example.Chat/x86_64/stable/abc123/metadata": "[Application]\nname=org.example.Chat\n",
        "var/lib/flatpak/app/org.example.Chat/x86_64/stable/abc123/deploy": "flathub\0",
        "home/alice/.local/share/flatpak/app/org.example.Notes/x86_64/stable/def456/metadata":
            "[Application]\nname=org.example.Notes\n",
        "home/alice/.local/share/applications/tool.desktop": "[Desktop Entry]\nType=Application\nName=Tool\nExec=/opt/tool/tool\n",
    }
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    for app in ("var/lib/flatpak/app/org.example.Chat/x86_64/stable",
                "home/alice/.local/share/flatpak/app/org.example.Notes/x86_64/stable"):
        (root / app / "active").symlink_to(sorted(p.name for p in (root / app).iterdir())[0])
    (root / "snap/hello-world/current").symlink_to("29")
    appimage = root / "home/bob/Applications/Zoom-6.0-x86_64.AppImage"
    appimage.parent.mkdir(parents=True)
    appimage.write_bytes(b"\x7fELF\x02\x01\x01\x00AI\x02" + bytes(64))
    for folder in [top, *root.rglob("*")]:
        if not folder.is_symlink():
            folder.chmod(0o755 if folder.is_dir() else 0o644)
    yield root
    shutil.rmtree(top)


def test_counts_per_source_and_user(tree: Path) -> None:
    done = appban("inventory", "--root", str(tree))
    assert done.returncode == 0, done.stderr
    rows = {tuple(line.split()[1:]) for line in done.stdout.splitlines() if line.startswith(str(tree)[:24])}
    assert {("dpkg", "1"), ("snap", "1"), ("apk", "1"), ("pacman", "1"), ("flatpak", "2"),
            ("appimage", "1"), ("desktop", "1")} <= rows
    assert {("alice", "2"), ("bob", "1"), ("(system)", "5")} <= rows
    assert "8 app(s) on 1 device(s)" in done.stdout


def test_source_option_and_json(tree: Path) -> None:
    done = appban("inventory", "--root", str(tree), "--source", "flatpak", "--format", "json")
    assert done.returncode == 0, done.stderr
    apps = json.loads(done.stdout)["apps"]
    assert sorted((a["id"], a["user"], a["extra"]["installation"]) for a in apps) == [
        ("org.example.Chat", "", "system"), ("org.example.Notes", "alice", "user")]
    assert next(a for a in apps if a["id"] == "org.example.Chat")["extra"]["origin"] == "flathub"


def test_missing_root_is_one_clear_error(tmp_path: Path) -> None:
    done = appban("inventory", "--root", str(tmp_path / "absent"))
    assert done.returncode == 2
    assert f"error: inventory: root {tmp_path / 'absent'}: not a folder" in done.stdout


def test_unreadable_databases_are_one_error_each_and_the_rest_survives(tree: Path) -> None:
    for path in ("var/lib/dpkg/status", "var/lib/snapd/state.json", "lib/apk/db/installed",
                 "var/lib/pacman/local/firefox-121.0-1/desc",
                 "var/lib/flatpak/app/org.example.Chat/x86_64/stable/abc123/metadata",
                 "home/bob/Applications/Zoom-6.0-x86_64.AppImage"):
        (tree / path).chmod(0)
    # root reads any file, so as root the agent is run as nobody (setpriv, from util-linux)
    done = appban("inventory", "--root", str(tree), "--format", "json", user="nobody" if os.geteuid() == 0 else None)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    errors = sorted((e["collector"], "Permission denied" in e["message"]) for e in report["errors"])
    assert errors == [(name, True) for name in ("apk", "appimage", "dpkg", "flatpak", "pacman", "snap")]
    survivors = sorted((a["source"], a["id"]) for a in report["apps"])
    assert survivors == [("desktop", "tool"), ("flatpak", "org.example.Notes"), ("snap", "hello-world")]


BANLIST = """format: appban.banlist/v1
serial: 7
issued: 2026-01-01T00:00:00Z
entries:
  - id: chat
    name: Example Chat
    match: {flatpak: [org.example.chat]}
  - id: hello
    name: Hello World
    match: {snap: [hello-world]}
  - id: zoom
    name: Zoom
    match: {deb: [zoom], names: ["Zoom*"]}
"""


def test_check_of_a_mounted_tree_finds_apps_from_every_kind_of_install(tree: Path) -> None:
    banlist = tree / "banlist.yaml"
    banlist.write_text(BANLIST)
    done = appban("check", "--root", str(tree), "--banlist", str(banlist), "--format", "json")
    assert done.returncode == 1, done.stderr
    findings = sorted((f["entry"], f["app"]["source"], f["app"]["user"]) for f in json.loads(done.stdout)["findings"])
    assert findings == [("chat", "flatpak", ""), ("hello", "snap", ""), ("zoom", "appimage", "bob"), ("zoom", "dpkg", "")]


def test_a_live_source_asked_for_on_a_mounted_tree_is_no_verdict(tree: Path) -> None:
    done = appban("check", "--root", str(tree), "--source", "process")
    assert done.returncode == 2, done.stdout
    assert "process" in done.stderr + done.stdout
