"""Links planted where collectors read: real symlinks in temp roots, one table row per collector.

Each row puts a link where its collector reads a record (a user's launcher, flatpak metadata,
Info.plist, NTUSER.DAT; a package database a root-owned folder holds) and points it at:

- a file of *this host*, outside the root, by its absolute path: never read (the link means the
  root's own path, as the image's system would read it);
- the same host file through `../../..` climbing out of the root: never read (`..` stops at the root);
- the root's own secret (root-owned, mode 0600): refused when the link sits in a folder a user
  can write (the user could not read it themselves), read when root's own folder holds the link;
- the root's own ordinary file (mode 0644): read, as linked launchers are an ordinary install;
- itself, through a loop: one error, no hang.

Every refused file is one error line, and the row's other record (a plain file next to the link)
is still there. The same rows run once more with the root a bind mount of a real folder.
"""

from __future__ import annotations

import json
import os
import plistlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from agent.inventory import collect
from agent.inventory.base import Context
from agent.inventory.reading import DanglingLinkError, read_bytes
from agent.platform import image_device_id
from tests.hives import USER_UNINSTALL, fixture_hive, hivexregedit, merge
from tests.volumes import app_bundle, info


@pytest.fixture(autouse=True)
def openat2_from_the_first_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read here may take openat2's one-call path, as a scan does after its first
    WALKED_FIRST files (its first ones are walked; test_without_openat2_... walks them all)."""
    from agent.inventory import reading

    monkeypatch.setattr(reading, "_walked", reading.WALKED_FIRST)


USER = 4242
"""The uid owning the planted home folders (no such user needs to exist: only numbers are compared)."""
SECRET = "Secret"
PUBLIC = "Public"
NEIGHBOUR = "Neighbour"


@dataclass(frozen=True)
class Row:
    """One collector: where its record goes, what a record named NAME looks like, what it found."""

    source: str
    record_at: Callable[[Path, str], Path]
    """(root, record name) -> where that record's file goes (the link, or the plain neighbour)."""
    content: Callable[[str, Path], bytes]
    """(name, scratch folder) -> the bytes of a valid record that yields `name`."""
    user_writable: bool
    """The record's folder belongs to a user (else to root, like a package database)."""
    prepare: Callable[[Path], None] = lambda root: None
    single: bool = False
    """The collector reads one file (snapd's state, apk's database): no neighbour record beside it."""


def _launcher(name: str, _: Path) -> bytes:
    return f"[Desktop Entry]\nType=Application\nName={name}\nExec=/opt/{name}/run\n".encode()


def _flatpak_metadata(name: str, _: Path) -> bytes:
    return f"[Application]\nname=org.example.{name}\nruntime={name}\n".encode()


def _flatpak_at(root: Path, name: str) -> Path:
    branch = root / "home/eve/.local/share/flatpak/app" / f"org.example.{name}" / "x86_64/stable"
    commit = branch / "0123abcd"
    commit.mkdir(parents=True, exist_ok=True)
    if not branch.joinpath("active").is_symlink():
        branch.joinpath("active").symlink_to("0123abcd")
    return commit / "metadata"


def _plist(name: str, _: Path) -> bytes:
    return plistlib.dumps(info(f"org.example.{name}", name, "1.0", "1"))


def _bundle_at(root: Path, name: str) -> Path:
    (root / "Applications").mkdir(exist_ok=True)
    bundle = app_bundle(root / "Users/eve/Applications", name, None)
    return bundle / "Contents/Info.plist"


def _hive(name: str, scratch: Path) -> bytes:
    hive = scratch / f"{name}.DAT"
    if not hive.exists():
        merge(fixture_hive("NTUSER.DAT", hive), {rf"{USER_UNINSTALL}\{name}": {"DisplayName": name}})
    return hive.read_bytes()


def _pacman(name: str, _: Path) -> bytes:
    return f"%NAME%\n{name}\n\n%VERSION%\n1.0-1\n\n".encode()


def _apk(name: str, _: Path) -> bytes:
    return f"P:{name}\nV:1.0-r0\n\n".encode()


def _dpkg(name: str, _: Path) -> bytes:
    return f"Package: {name}\nStatus: install ok installed\nVersion: 1.0\nArchitecture: all\n\n".encode()


def _snap_state(name: str, _: Path) -> bytes:
    state = {"data": {"snaps": {name.lower(): {"current": "1", "active": True,
                                               "sequence": [{"name": name.lower(), "revision": "1", "title": name}]}}}}
    return json.dumps(state).encode()


ROWS = [
    Row("desktop", lambda root, name: root / "home/eve/.local/share/applications" / f"{name}.desktop", _launcher, True),
    Row("flatpak", _flatpak_at, _flatpak_metadata, True),
    Row("macos", _bundle_at, _plist, True),
    Row("windows", lambda root, name: root / "Users" / name.lower() / "NTUSER.DAT", _hive, True,
        prepare=lambda root: hivexregedit() and None),
    Row("pacman", lambda root, name: root / "var/lib/pacman/local" / f"{name.lower()}-1.0-1" / "desc", _pacman, False),
    Row("snap", lambda root, name: root / "var/lib/snapd/state.json", _snap_state, False, single=True),
    Row("apk", lambda root, name: root / "lib/apk/db/installed", _apk, False, single=True),
    Row("dpkg", lambda root, name: root / "var/lib/dpkg/status", _dpkg, False, single=True),
]
CASES = ("host-absolute", "host-dotdot", "root-secret", "root-public", "loop")


def _found(root: Path, row: Row) -> tuple[set[str], list[str]]:
    inventory = collect(Context(root=root, live=False), [row.source])
    names = {a.name for a in inventory.apps}
    names |= {a.extra_value("runtime") for a in inventory.apps if a.extra_value("runtime")}
    return names, [e.message for e in inventory.errors if e.collector == row.source]


def _own(root: Path, path: Path, uid: int) -> None:
    """chown the folders holding `path`, from the user's home (two levels below the root) down."""
    for folder in [path.parent, *path.parent.parents]:
        if folder.parent == root or root not in folder.parents:
            break
        os.chown(folder, uid, uid)


def _plant(root: Path, host: Path, row: Row, case: str, scratch: Path) -> Path:
    """Lay out one case under `root`: the link, the files it may reach, a plain neighbour record."""
    row.prepare(root)
    host_file = host / "host-record"
    host_file.write_bytes(row.content("HostFile", scratch))
    host_file.chmod(0o600)
    secret = root / "etc" / "secret-record"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_bytes(row.content(SECRET, scratch))
    secret.chmod(0o600)
    public = root / "opt" / "public-record"
    public.parent.mkdir(parents=True, exist_ok=True)
    public.write_bytes(row.content(PUBLIC, scratch))
    link = row.record_at(root, "Planted")
    link.parent.mkdir(parents=True, exist_ok=True)
    depth = len(link.relative_to(root).parts) - 1
    target = {
        "host-absolute": str(host_file),
        "host-dotdot": "../" * (depth + len(root.parts) + 3) + str(host_file).lstrip("/"),
        "root-secret": "/etc/secret-record",
        "root-public": "/opt/public-record",
        "loop": "Loop-b",
    }[case]
    if case == "loop":
        (link.parent / "Loop-b").symlink_to(link.name)
    link.symlink_to(target)
    if not row.single:
        neighbour = row.record_at(root, NEIGHBOUR)
        neighbour.parent.mkdir(parents=True, exist_ok=True)
        neighbour.write_bytes(row.content(NEIGHBOUR, scratch))
        _own(root, neighbour, USER if row.user_writable else 0)
    _own(root, link, USER if row.user_writable else 0)
    return link


def _check(root: Path, host: Path, row: Row, case: str, scratch: Path) -> None:
    link = _plant(root, host, row, case, scratch)
    names, errors = _found(root, row)
    assert "HostFile" not in names, f"{row.source}/{case}: read a file outside the root"
    if not row.single:
        assert NEIGHBOUR in names, f"{row.source}/{case}: the plain record beside the link was lost ({errors})"
    if case == "root-public":
        assert PUBLIC in names, errors
        return
    if case == "root-secret" and not row.user_writable:
        assert SECRET in names, errors  # root's own folder: root wrote the link
        return
    assert SECRET not in names and PUBLIC not in names
    if row.source == "snap":
        return  # a state file that is not read falls back to the mounted snaps (none here)
    about_link = [e for e in errors if "planted" in e.lower() or row.single]
    assert len(about_link) == 1 and len(errors) == 1, (case, errors)
    expected = {"host-absolute": "does not exist inside the root", "host-dotdot": "does not exist inside the root",
                "root-secret": f"user {USER} could have planted", "loop": "a loop?"}[case]
    assert expected in about_link[0], about_link


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("records")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.source)
def test_a_planted_link_reads_only_what_it_may(tmp_path: Path, scratch: Path, row: Row, case: str) -> None:
    root, host = tmp_path / "root", tmp_path / "host"
    root.mkdir()
    host.mkdir()
    _check(root, host, row, case, scratch)


@pytest.fixture
def bind_root(tmp_path: Path):
    """A real folder bind-mounted at a second place (no loop: the mount point is outside it)."""
    real, point = tmp_path / "real", tmp_path / "point"
    real.mkdir()
    point.mkdir()
    done = subprocess.run(["mount", "--bind", str(real), str(point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.strip()}")
    try:
        yield real, point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("row", [r for r in ROWS if r.source in ("desktop", "macos", "pacman")], ids=lambda r: r.source)
def test_a_bind_mounted_root_behaves_as_the_folder_itself(bind_root, tmp_path: Path, scratch: Path, row: Row,
                                                          case: str) -> None:
    real, point = bind_root
    host = tmp_path / "host"
    host.mkdir()
    _check(point, host, row, case, scratch)
    # a link naming the bind's *source* by its host path is outside the root too
    launcher = point / "home/eve/.local/share/applications/ViaSource.desktop"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.symlink_to(real / "opt/public-record")
    with pytest.raises(FileNotFoundError, match="does not exist inside the root"):
        read_bytes(launcher, root=point)


def test_a_linked_folder_in_a_home_is_held_to_the_same_rule(tmp_path: Path) -> None:
    """A user's whole launcher folder (or AppImage folder) linked to a folder they cannot list."""
    root = tmp_path / "root"
    private = root / "root/.local/share/applications"
    private.mkdir(parents=True)
    (private / "RootOnly.desktop").write_bytes(_launcher("RootOnly", tmp_path))
    os.chmod(root / "root", 0o700)
    home = root / "home/eve/.local/share"
    home.mkdir(parents=True)
    (home / "applications").symlink_to("/root/.local/share/applications")
    _own(root, home / "applications", USER)
    inventory = collect(Context(root=root, live=False), ["desktop"])
    eve = [a for a in inventory.apps if a.user == "eve"]
    assert eve == []
    assert any("applications" in e.message and f"user {USER} could have planted" in e.message
               for e in inventory.errors), inventory.errors
    assert "RootOnly" in {a.name for a in inventory.apps if a.user == "root"}  # root's own launcher still counts


def test_an_image_machine_id_link_never_gives_the_host_id(tmp_path: Path) -> None:
    host_id = tmp_path / "host-machine-id"
    host_id.write_text("0123456789abcdef0123456789abcdef\n")
    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    (image / "etc/machine-id").symlink_to(host_id)
    assert image_device_id(image) == ""
    (image / "var/lib/dbus").mkdir(parents=True)
    (image / "var/lib/dbus/machine-id").write_text("fedcba9876543210fedcba9876543210\n")
    assert image_device_id(image) == "fedcba9876543210fedcba9876543210"


def _appimage(path: Path, owner: int) -> None:
    """A file with an AppImage type-1 header (ELF magic, `AI`, type 1: no squashfs to read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00AI\x01".ljust(64, b"\x00"))
    path.chmod(0o755)
    os.chown(path, owner, owner)


@pytest.mark.parametrize(("target", "found"), [
    ("/root/Applications", False),   # root's private folder: the user could not list it
    ("/opt/apps", True),             # a folder everyone may list: its AppImage counts
    (None, False),                   # a host folder by its absolute path: outside the root
])
def test_a_linked_appimage_folder_in_a_home(tmp_path: Path, target: str | None, found: bool) -> None:
    root, host = tmp_path / "root", tmp_path / "host"
    _appimage(root / "root/Applications/Private-1.0-x86_64.AppImage", 0)
    os.chmod(root / "root", 0o700)
    _appimage(root / "opt/apps/Public-1.0-x86_64.AppImage", 0)
    _appimage(host / "Host-1.0-x86_64.AppImage", 0)
    applications = root / "home/eve/Applications"
    applications.parent.mkdir(parents=True)
    applications.symlink_to(target or str(host))
    _own(root, applications, USER)
    inventory = collect(Context(root=root, live=False), ["appimage"])
    eve = {a.name for a in inventory.apps if a.user == "eve"}
    assert eve == ({"Public"} if found else set())
    assert "Host" not in {a.name for a in inventory.apps}
    assert "Private" in {a.name for a in inventory.apps if a.user == "root"}  # root's own folder still counts
    if target == "/root/Applications":
        assert any(f"user {USER} could have planted" in e.message for e in inventory.errors), inventory.errors


def test_a_relative_root_is_the_same_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "image/etc").mkdir(parents=True)
    (tmp_path / "image/etc/record").write_text("inside")
    (tmp_path / "image/etc/link").symlink_to("/etc/record")
    monkeypatch.chdir(tmp_path)
    assert read_bytes(Path("image/etc/link"), root=Path("image")) == b"inside"


def test_a_linked_applications_folder_on_a_macos_volume_is_one_error_and_a_link_out_is_nothing(tmp_path: Path) -> None:
    root = tmp_path / "volume"
    app_bundle(root / "private/var/root/Apps", "RootOnly", info("org.example.rootonly", "RootOnly", "1", "1"))
    os.chmod(root / "private/var/root", 0o700)
    app_bundle(root / "Applications", "Shared", info("org.example.shared", "Shared", "1", "1"))
    home = root / "Users/eve"
    home.mkdir(parents=True)
    (home / "Applications").symlink_to("/private/var/root/Apps")
    app_bundle(tmp_path / "host", "HostApp", info("org.example.host", "HostApp", "1", "1"))
    (home / "Downloads").symlink_to(str(tmp_path / "host"))  # the host's folder: outside the volume
    _own(root, home / "Applications", USER)
    inventory = collect(Context(root=root, live=False), ["macos"])
    assert {a.name for a in inventory.apps} == {"Shared"}
    errors = [e.message for e in inventory.errors if e.collector == "macos"]
    assert len(errors) == 1 and errors[0].startswith("/Users/eve/Applications: reached through a link"), errors
    # the Downloads link names a folder that is not inside the volume: nothing there, as for a
    # link to a drive that is not plugged in, and never the host's folder


def test_a_hard_link_to_roots_file_in_a_home_is_refused_too(tmp_path: Path) -> None:
    """With fs.protected_hardlinks off (or on an image made elsewhere) a user can hard-link a file
    they cannot read into their own folder: it is held to the same rule as a symlink."""
    root = tmp_path / "root"
    secret = root / "etc/secret.desktop"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(_launcher(SECRET, tmp_path))
    secret.chmod(0o600)
    public = root / "etc/public.desktop"
    public.write_bytes(_launcher(PUBLIC, tmp_path))
    folder = root / "home/eve/.local/share/applications"
    folder.mkdir(parents=True)
    os.link(secret, folder / "secret.desktop")
    os.link(public, folder / "public.desktop")
    _own(root, folder / "x", USER)
    inventory = collect(Context(root=root, live=False), ["desktop"])
    assert {a.name for a in inventory.apps} == {PUBLIC}
    assert [e.message for e in inventory.errors if "secret.desktop" in e.message and "cannot read" in e.message]


def test_a_missing_file_below_a_linked_folder_is_just_missing(tmp_path: Path) -> None:
    """Merged /usr: /lib is a link to usr/lib; no apk database under it means no apk collector,
    not an error about a dangling link. A link whose own target is missing is one."""
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    (root / "etc").mkdir()
    (root / "etc/gone").symlink_to("/usr/lib/nothing/here")
    with pytest.raises(FileNotFoundError) as missing:
        read_bytes(root / "lib/apk/db/installed", root=root)
    assert type(missing.value) is FileNotFoundError
    with pytest.raises(DanglingLinkError, match="leads to /usr/lib/nothing/here"):
        read_bytes(root / "etc/gone", root=root)
    inventory = collect(Context(root=root, live=False), ["apk"])
    assert [e.message for e in inventory.errors] == [f"not available here: no apk database at {root}/lib/apk/db/installed"]


@pytest.mark.parametrize("case", CASES)
def test_without_openat2_the_walk_alone_gives_the_same_answers(tmp_path: Path, scratch: Path, case: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel before Linux 5.6, or a seccomp filter refusing openat2: every path is walked."""
    from agent.inventory import reading

    monkeypatch.setattr(reading, "_openat2", lambda: None)
    root, host = tmp_path / "root", tmp_path / "host"
    root.mkdir()
    host.mkdir()
    _check(root, host, ROWS[0], case, scratch)


def test_launcher_and_appimage_folders_that_are_not_folders_are_skipped_without_an_error(tmp_path: Path) -> None:
    """The desktop and AppImage collectors list each usual folder without asking first whether it
    is there: what is not a folder (missing, a file, a link to nothing or out of the root, a link
    to a file) is skipped as it was, no error, and a folder that is there is still read."""
    root = tmp_path / "root"
    (root / "usr/share/applications").mkdir(parents=True)
    (root / "usr/share/applications/shared.desktop").write_bytes(_launcher(PUBLIC, tmp_path))
    home = root / "home/eve"
    (home / ".local/share").mkdir(parents=True)
    (home / ".local/share/applications").write_text("not a folder\n")
    (home / "Desktop").symlink_to("/media/usb/Desktop")
    (home / "Downloads").symlink_to(str(tmp_path))
    (home / "bin").symlink_to(".local/share/applications")
    (home / "Applications").mkdir()
    inventory = collect(Context(root=root, live=False), ["desktop", "appimage"])
    assert [e.message for e in inventory.errors] == []
    assert {a.name for a in inventory.apps} == {PUBLIC}
