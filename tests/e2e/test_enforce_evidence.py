"""Evidence is not authority, for real: a local user's launchers and planted links, in a system
tree with a real dpkg database, run through `appban check --enforce` as root, never make root
move a file that is not that user's own — while a genuine AppImage in the user's own home, owned
by that user, is still quarantined (and the system's files are byte-identical afterwards).

The attack is issue 11's: `Name=TikTok`, `Exec=//etc/shadow`, and the variants a resolver must
fold (`/./`, `..`, a symlink in the home, another user's home, /root, /boot, /var).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.enforce.act import _quarantine
from agent.enforce.plan import Action
from agent.enforce.quarantine import QuarantineError, quarantine, records, restore
from agent.model import App, Entry, Finding
from agent.runner import Runner

sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))
from enforce_support import (banlist_yaml, build_deb, config_yaml, dpkg, installed, make_dpkg_root,  # noqa: E402
                             need_root, unique)

TOP = Path(__file__).parents[2]
ALICE, BOB = 61001, 61002
"""Owners of the two homes: uids no account on this machine uses, so nothing real is touched."""

SYSTEM_FILES = {
    "etc/shadow": "root:*:19000:0:99999:7:::\n", "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "root/.ssh/authorized_keys": "ssh-ed25519 AAAA admin\n", "boot/vmlinuz": "kernel\n",
    "var/lib/important.db": "data\n", "home/bob/thesis.pdf": "bob's work\n",
    "srv/shared/Shared-x86_64.AppImage": None, "usr/bin/tiktok": "#!/bin/sh\n",
    "opt/packaged/WPS-Packaged-x86_64.AppImage": None,
}
"""Files the attacker points at (None: a genuine AppImage, owned by root, outside alice's home)."""

ATTACKS = {
    "slashes": "//etc/shadow", "dot": "/./etc/shadow", "dotdot": "/usr/../etc/passwd",
    "relative-link": "/home/alice/.cache/link", "absolute-link": "/home/alice/.cache/abslink",
    "dir-link": "/home/alice/.cache/etcdir/shadow", "other-home": "/home/bob/thesis.pdf",
    "root-home": "/root/.ssh/authorized_keys", "boot": "/boot/vmlinuz", "var": "/var/lib/important.db",
    "packaged": "/usr/bin/tiktok",
}


def appimage_bytes() -> bytes:
    """An ELF with the AppImage type-2 magic at offset 8 (AppImage specification, "Magic bytes")."""
    elf = bytearray(Path("/bin/true").read_bytes())
    elf[8:11] = b"AI\x02"
    return bytes(elf)


def build_tree(root: Path) -> dict[str, bytes]:
    """Lay out the system: a dpkg root, system files, alice's and bob's homes, alice's launchers
    (one per attack) and links, and her own AppImage. Return {device path: content} of every
    file that must be left as it is."""
    make_dpkg_root(root)
    kept: dict[str, bytes] = {}
    for rel, text in SYSTEM_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = appimage_bytes() if text is None else text.encode()
        path.write_bytes(data)
        path.chmod(0o755 if text is None else 0o600)
        kept["/" + rel] = data
    (root / "var/lib/dpkg/info/tiktok.list").write_text("/usr\n/usr/bin\n/usr/bin/tiktok\n")
    (root / "var/lib/dpkg/info/wps-packaged.list").write_text("/opt\n/opt/packaged\n/opt/packaged/WPS-Packaged-x86_64.AppImage\n")
    for home, uid in (("home/alice", ALICE), ("home/bob", BOB)):
        (root / home).mkdir(parents=True, exist_ok=True)
        for dirpath, dirs, files in os.walk(root / home):
            for name in [*dirs, *files, ""]:
                os.lchown(os.path.join(dirpath, name), uid, uid)
    cache = root / "home/alice/.cache"
    cache.mkdir()
    (cache / "link").symlink_to("../../../etc/shadow")
    (cache / "abslink").symlink_to("/etc/shadow")
    (cache / "etcdir").symlink_to("../../../etc")
    (root / "home/alice/AppImages").symlink_to("../../srv/shared")  # the scan finds root's AppImage "in" her home
    launchers = root / "home/alice/.local/share/applications"
    launchers.mkdir(parents=True)
    for name, target in ATTACKS.items():
        (launchers / f"{name}.desktop").write_text(f"[Desktop Entry]\nType=Application\nName=TikTok\nExec={target}\n")
    own = root / "home/alice/Applications/WPS-Office-x86_64.AppImage"
    own.parent.mkdir()
    own.write_bytes(appimage_bytes())
    own.chmod(0o755)
    for path in [*cache.iterdir(), cache, launchers, *launchers.iterdir(), own.parent, own,
                 root / "home/alice/AppImages", root / "home/alice/.local", root / "home/alice/.local/share"]:
        os.lchown(path, ALICE, ALICE)
    return kept


def check(tmp: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    banlist = tmp / "list.yaml"
    banlist.write_text(banlist_yaml([{"id": "tiktok", "match": {"names": ["TikTok"]}},
                                     {"id": "shared", "match": {"names": ["Shared*"]}},
                                     {"id": "wps-office", "match": {"names": ["WPS*"]}}]))
    config = tmp / "agent.yaml"
    # a cap above the number of attacks: each must be refused on its own merits, not by the cap
    config.write_text(config_yaml(root, tmp / "state", max_actions=50).replace("sources: [dpkg, desktop]",
                                                               "sources: [dpkg, desktop, appimage]"))
    return subprocess.run([sys.executable, "-m", "agent", "check", "--banlist", str(banlist), "--config", str(config),
                           "--format", "json", *args], cwd=TOP, capture_output=True, text=True, timeout=180)


def test_a_users_launchers_and_links_never_make_root_move_a_file(tmp_path: Path) -> None:
    need_root()
    root = tmp_path / "sys"
    kept = build_tree(root)

    done = check(tmp_path, root, "--enforce")
    assert done.returncode == 1, done.stderr
    findings = json.loads(done.stdout)["findings"]
    by_launcher = {f["app"]["id"]: f["outcome"] for f in findings if f["app"]["source"] == "desktop"}
    assert sorted(by_launcher) == sorted(ATTACKS)
    assert all(o.startswith("refused: a launcher is evidence for the report") for o in by_launcher.values()), by_launcher
    scanned = {f["app"]["path"]: f["outcome"] for f in findings if f["app"]["source"] == "appimage"}
    assert scanned == {
        "/home/alice/AppImages/Shared-x86_64.AppImage":
            "refused: /home/alice/AppImages/Shared-x86_64.AppImage resolves to /srv/shared/Shared-x86_64.AppImage, "
            "outside alice's home /home/alice",
        "/home/alice/Applications/WPS-Office-x86_64.AppImage": "quarantined",
        "/opt/packaged/WPS-Packaged-x86_64.AppImage":
            "refused: /opt/packaged/WPS-Packaged-x86_64.AppImage belongs to package dpkg:wps-packaged; "
            "the package is what gets removed",
    }
    for device_path, data in kept.items():
        assert (root / device_path.lstrip("/")).read_bytes() == data, f"{device_path} was changed"
    assert os.path.islink(root / "home/alice/.cache/abslink")
    assert not (root / "home/alice/Applications/WPS-Office-x86_64.AppImage").exists()
    stored = list((tmp_path / "state/quarantine").glob("*/0-WPS-Office-x86_64.AppImage"))
    assert len(stored) == 1 and stored[0].read_bytes() == appimage_bytes()


def test_a_users_appimage_owned_by_someone_else_or_hard_linked_stays(tmp_path: Path) -> None:
    """In her own home but not hers (root planted it, or she hard-linked a file of root's): the
    path is right, the owner is not, so nothing moves."""
    need_root()
    root = tmp_path / "sys"
    kept = build_tree(root)
    own = root / "home/alice/Applications/WPS-Office-x86_64.AppImage"
    os.lchown(own, 0, 0)
    kept["/home/alice/Applications/WPS-Office-x86_64.AppImage"] = own.read_bytes()
    linked = root / "home/alice/Applications/Shared-x86_64.AppImage"
    os.link(root / "srv/shared/Shared-x86_64.AppImage", linked)
    done = check(tmp_path, root, "--enforce")
    scanned = {f["app"]["path"]: f["outcome"] for f in json.loads(done.stdout)["findings"] if f["app"]["source"] == "appimage"}
    assert scanned["/home/alice/Applications/WPS-Office-x86_64.AppImage"] == (
        f"refused: /home/alice/Applications/WPS-Office-x86_64.AppImage is owned by uid 0, not by alice (uid {ALICE})")
    assert scanned["/home/alice/Applications/Shared-x86_64.AppImage"].startswith("refused: ")
    for device_path, data in kept.items():
        assert (root / device_path.lstrip("/")).read_bytes() == data, f"{device_path} was changed"
    assert linked.exists()


def test_a_symlink_swapped_in_after_the_scan_is_judged_again(tmp_path: Path) -> None:
    """Between plan and move the user replaces her AppImage by a link to /etc/shadow: the check
    is repeated just before the move, so the move is refused."""
    need_root()
    root = tmp_path / "sys"
    kept = build_tree(root)
    config = parse_config(config_yaml(root, tmp_path / "state").encode(), "config")
    app = App(source="appimage", id="WPS-Office-x86_64.AppImage", name="WPS-Office",
              path="/home/alice/Applications/WPS-Office-x86_64.AppImage", user="alice")
    own = root / app.path.lstrip("/")
    own.unlink()
    own.symlink_to("../../../etc/shadow")
    action = Action("quarantine", app.path, app, (Finding("violation", Entry(id="wps", name="WPS"), app, "d", "x"),))
    with pytest.raises(QuarantineError, match="outside alice's home"):
        _quarantine(action, config, Runner())
    assert (root / "etc/shadow").read_bytes() == kept["/etc/shadow"]


def test_a_folder_swapped_for_a_link_after_the_check_stops_the_move_and_the_restore(tmp_path: Path) -> None:
    """The last races: after the check, alice replaces a folder on the way by a link to /etc
    (the move must not follow it); while her file is in quarantine, she replaces the folder it
    came from by a link to /etc (the restore must not write into /etc)."""
    need_root()
    root = tmp_path / "sys"
    kept = build_tree(root)
    store = tmp_path / "store"
    apps = root / "home/alice/Applications"
    image = apps / "WPS-Office-x86_64.AppImage"
    checked = os.lstat(image)
    (root / "etc/WPS-Office-x86_64.AppImage").write_bytes(b"root's file\n")
    apps.rename(root / "home/alice/Applications.away")
    apps.symlink_to("../../etc")
    with pytest.raises(QuarantineError, match="'Applications' on the way is missing or a symlink"):
        quarantine(str(root), store, ["/home/alice/Applications/WPS-Office-x86_64.AppImage"], "wps", "wps",
                   expect=(checked.st_dev, checked.st_ino))
    assert (root / "etc/WPS-Office-x86_64.AppImage").read_bytes() == b"root's file\n"
    (root / "etc/WPS-Office-x86_64.AppImage").unlink()
    apps.unlink()
    (root / "home/alice/Applications.away").rename(apps)

    record = quarantine(str(root), store, ["/home/alice/Applications/WPS-Office-x86_64.AppImage"], "wps", "wps",
                        expect=(checked.st_dev, checked.st_ino))
    apps.rename(root / "home/alice/Applications.away")
    apps.symlink_to("../../etc")
    with pytest.raises(QuarantineError, match="on the way is missing or a symlink"):
        restore(str(root), store, record.id)
    assert not (root / "etc/WPS-Office-x86_64.AppImage").exists()
    assert [r.id for r in records(store)] == [record.id]
    for device_path, data in kept.items():
        assert (root / device_path.lstrip("/")).read_bytes() == data, f"{device_path} was changed"


def test_a_file_replaced_after_the_check_is_not_moved(tmp_path: Path) -> None:
    need_root()
    root = tmp_path / "sys"
    build_tree(root)
    image = root / "home/alice/Applications/WPS-Office-x86_64.AppImage"
    checked = os.lstat(image)
    with open(image, "rb"):  # held open, so the new file cannot get the old inode number
        image.unlink()
        image.write_bytes(b"another file now\n")
        with pytest.raises(QuarantineError, match="no longer the file that was checked"):
            quarantine(str(root), tmp_path / "store", ["/home/alice/Applications/WPS-Office-x86_64.AppImage"],
                       "wps", "wps", expect=(checked.st_dev, checked.st_ino))
    assert image.read_bytes() == b"another file now\n"


def test_a_users_launcher_cannot_rename_a_system_package_into_a_banned_app(tmp_path: Path) -> None:
    """`Name=TikTok` with `Exec=/usr/bin/<a system package's program>` in alice's launcher: the
    launcher is reported, the package (real dpkg, installed in the tree) is not uninstalled."""
    need_root()
    root = tmp_path / "sys"
    build_tree(root)
    package = unique("appban-test-webserver")
    deb = build_deb(tmp_path, package, {package: b"#!/bin/sh\n"})
    assert dpkg(root, "-i", str(deb)).returncode == 0
    (root / "home/alice/.local/share/applications/webserver.desktop").write_text(
        f"[Desktop Entry]\nType=Application\nName=TikTok\nExec=/usr/bin/{package}\n")
    done = check(tmp_path, root, "--enforce")
    findings = json.loads(done.stdout)["findings"]
    assert not [f for f in findings if f["app"]["source"] == "dpkg"], findings
    assert next(f for f in findings if f["app"]["id"] == "webserver")["outcome"].startswith(
        "refused: a launcher is evidence for the report")
    assert installed(root, package)


def test_a_home_under_a_linked_home_folder_is_still_its_users(tmp_path: Path) -> None:
    """/home may be a link root made (/home → var/home, as on Fedora Atomic): alice's own
    AppImage there is still hers and quarantined; a launcher attack is still refused."""
    need_root()
    root = tmp_path / "sys"
    kept = build_tree(root)
    (root / "var/home").mkdir()
    (root / "home").rename(root / "var/home.tmp")
    (root / "var/home").rmdir()
    (root / "var/home.tmp").rename(root / "var/home")
    (root / "home").symlink_to("var/home")
    done = check(tmp_path, root, "--enforce")
    outcomes = {f["app"]["path"]: f["outcome"] for f in json.loads(done.stdout)["findings"]}
    assert outcomes["/home/alice/Applications/WPS-Office-x86_64.AppImage"] == "quarantined", outcomes
    assert outcomes["//etc/shadow"].startswith("refused: a launcher is evidence")
    assert (root / "etc/shadow").read_bytes() == kept["/etc/shadow"]
