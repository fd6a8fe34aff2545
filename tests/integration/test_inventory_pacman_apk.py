"""The pacman and apk collectors on databases written as the tools write them.

Neither pacman nor apk is packaged for Debian, so the databases are written here in their
on-disk formats: pacman's local database as libalpm's `be_local.c` (`_alpm_local_db_write`)
writes `desc` and `files` (pacman 6.x); apk's `installed` file as apk-tools 2.x
(`apk_db_write_fdb`) writes it, field letters as documented in the apk-tools wiki "Apk spec".
"""

from __future__ import annotations

from pathlib import Path

from agent.inventory import collect
from agent.inventory.owned import app_files
from tests.linux_roots import context

PACMAN_DESC = """%NAME%
{name}

%VERSION%
{version}

%BASE%
{name}

%DESC%
A test package

%URL%
https://example.invalid/

%ARCH%
x86_64

%BUILDDATE%
1700000000

%INSTALLDATE%
1700000100

%PACKAGER%
Arch Tester <tester@archlinux.invalid>

%SIZE%
1024

%REASON%
1

%LICENSE%
MIT

%VALIDATION%
pgp

"""
PACMAN_FILES = "%FILES%\nusr/\nusr/bin/\nusr/bin/{name}\n\n%BACKUP%\n\n"
APK_INSTALLED = """C:Q1SHA1SHA1SHA1SHA1SHA1SHA1SHA1SHA=
P:musl
V:1.2.4-r2
A:x86_64
S:383152
I:622592
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1697553235
c:d3fa8bd9f0fd0e0c0f02f7e1e5e3bc8e1f26a1b3
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1SHA1SHA1SHA1SHA1SHA1SHA1SHA1SHB=
R:libc.musl-x86_64.so.1

C:Q1SHA1SHA1SHA1SHA1SHA1SHA1SHA1SHC=
P:telegram-desktop
V:4.14.9-r0
A:x86_64
S:30000000
I:90000000
T:Telegram Desktop messaging app
U:https://desktop.telegram.org/
L:GPL-3.0-or-later
o:telegram-desktop
m:Alpine Packager <packager@alpinelinux.invalid>
t:1700000000
D:so:libc.musl-x86_64.so.1
F:usr/bin
R:telegram-desktop
a:0:0:755

"""


def _pacman_root(root: Path) -> Path:
    local = root / "var/lib/pacman/local"
    for name, version in (("firefox", "121.0-1"), ("zoom", "1:6.0.2-1")):
        folder = local / f"{name}-{version}"
        folder.mkdir(parents=True)
        (folder / "desc").write_text(PACMAN_DESC.format(name=name, version=version))
        (folder / "files").write_text(PACMAN_FILES.format(name=name))
    (local / "ALPM_DB_VERSION").write_text("9\n")
    return local


def test_pacman_local_database(tmp_path: Path) -> None:
    _pacman_root(tmp_path)
    inventory = collect(context(tmp_path), ["pacman"])
    assert not inventory.errors
    assert sorted((a.id, a.version, a.publisher, a.extra_value("arch")) for a in inventory.apps) == [
        ("firefox", "121.0-1", "Arch Tester <tester@archlinux.invalid>", "x86_64"),
        ("zoom", "1:6.0.2-1", "Arch Tester <tester@archlinux.invalid>", "x86_64"),
    ]
    zoom = next(a for a in inventory.apps if a.id == "zoom")
    assert app_files(context(tmp_path), zoom) == ["/usr/", "/usr/bin/", "/usr/bin/zoom"]


def test_truncated_pacman_desc_is_one_error_and_the_rest_survives(tmp_path: Path) -> None:
    local = _pacman_root(tmp_path)
    (local / "zoom-1:6.0.2-1/desc").write_text("%NA")
    inventory = collect(context(tmp_path), ["pacman"])
    assert [(e.collector, "truncated" in e.message) for e in inventory.errors] == [("pacman", True)]
    assert [a.id for a in inventory.apps] == ["firefox"]


def test_apk_installed_database(tmp_path: Path) -> None:
    db = tmp_path / "lib/apk/db/installed"
    db.parent.mkdir(parents=True)
    db.write_text(APK_INSTALLED)
    inventory = collect(context(tmp_path), ["apk"])
    assert not inventory.errors
    assert sorted((a.id, a.version, a.extra_value("origin")) for a in inventory.apps) == [
        ("musl", "1.2.4-r2", "musl"), ("telegram-desktop", "4.14.9-r0", "telegram-desktop")]
    musl = next(a for a in inventory.apps if a.id == "musl")
    assert app_files(context(tmp_path), musl) == ["/lib/ld-musl-x86_64.so.1", "/lib/libc.musl-x86_64.so.1"]


def test_truncated_apk_database_is_one_error_and_complete_records_survive(tmp_path: Path) -> None:
    db = tmp_path / "lib/apk/db/installed"
    db.parent.mkdir(parents=True)
    db.write_text(APK_INSTALLED[: APK_INSTALLED.index("P:telegram") + 9])
    inventory = collect(context(tmp_path), ["apk"])
    assert [e.collector for e in inventory.errors] == ["apk"]
    assert "truncated" in inventory.errors[0].message
    assert "musl" in {a.id for a in inventory.apps}
