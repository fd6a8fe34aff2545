"""What the exec guard may deny, for real: every package manager's banned files (a real rpm
database built with rpmbuild + rpm, pacman's and apk's databases in their on-disk formats), under
the fanotify guard on a tmpfs; and a list that matches everything (`names: ["*"]`) against this
machine's own dpkg database (read, never changed) is refused whole — nothing denied, no action
planned — while even a cap that would allow it never denies the shells, the login path or the
agent's own interpreter and libraries.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.banlist.parse import parse_banlist
from agent.config import parse_config
from agent.enforce.act import host_facts, write_fapolicyd_rules
from agent.enforce.critical import agent_files, shells
from agent.enforce.execguard import ExecGuard
from agent.enforce.guard import build_deny
from agent.enforce.plan import TOO_MANY, plan
from agent.inventory import collect
from agent.inventory.base import Context
from agent.match import compile_banlist, match
from agent.model import Device
from agent.runner import Runner
from enforce_support import banlist_yaml, build_deb, config_yaml, dpkg, make_dpkg_root, need, unique
from test_execguard import mount, runs, started  # noqa: F401  (the tmpfs fixture and helpers)
from tests.integration.test_inventory_pacman_apk import APK_INSTALLED, PACMAN_DESC, PACMAN_FILES
from tests.linux_roots import build_rpm, rpm_install

DEVICE = Device(id="test-host")
NOW = datetime.now(timezone.utc)


def findings_on(root: Path, sources: list[str], entries: list[dict]):
    """Collect `sources` under `root` with the real collectors and match them."""
    banlist = parse_banlist(banlist_yaml(entries).encode(), "test list")
    inventory = collect(Context(root=root, live=root == Path("/")), sources)
    apps = [replace(a, device=DEVICE.id) for a in inventory.apps]
    return banlist, match(apps, {DEVICE.id: DEVICE}, compile_banlist(banlist), NOW)


def rpm_root(root: Path, work: Path, name: str) -> Path:
    """A throwaway root whose rpm database (real rpm, /var/lib/rpm) holds package `name`."""
    need("rpmbuild")
    work.mkdir()
    rpm_install(root, "/var/lib/rpm", build_rpm(work, name, "1.0", "1", {f"/usr/bin/{name}": "#!/bin/sh\nexit 0\n"}))
    program = root / "usr/bin" / name
    program.chmod(0o755)  # linux_roots.build_rpm packs files 0644
    return program


def pacman_root(root: Path, work: Path, name: str) -> Path:
    """A root with pacman's local database (libalpm's `desc`/`files`) holding package `name`."""
    folder = root / f"var/lib/pacman/local/{name}-1.0-1"
    folder.mkdir(parents=True)
    (folder / "desc").write_text(PACMAN_DESC.format(name=name, version="1.0-1"))
    (folder / "files").write_text(PACMAN_FILES.format(name=name))
    (root / "var/lib/pacman/local/ALPM_DB_VERSION").write_text("9\n")
    return _program(root, name)


def apk_root(root: Path, work: Path, name: str) -> Path:
    """A root with apk's `installed` database (apk-tools 2.x) holding package `name` (and musl)."""
    db = root / "lib/apk/db/installed"
    db.parent.mkdir(parents=True)
    db.write_text(APK_INSTALLED.replace("telegram-desktop", name))
    return _program(root, name)


def _program(root: Path, name: str) -> Path:
    path = root / "usr/bin" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("source,kind,build", [
    ("rpm", "rpm", rpm_root), ("pacman", "names", pacman_root), ("apk", "names", apk_root),
])
def test_files_of_a_banned_rpm_pacman_or_apk_package_are_denied(mount: Path, source, kind, build) -> None:  # noqa: F811
    """Issue 11 item 14: the guard denied only dpkg packages' files."""
    name = unique("appbantest")
    root = mount / "sys"
    program = build(root, mount / "work", name)
    innocent = _program(root, unique("innocent"))
    banlist, findings = findings_on(root, [source], [{"id": "banned-app", "match": {kind: [name]}}])
    assert [f.app.source for f in findings] == [source]
    config = parse_config(config_yaml(root, mount / "state").encode(), "config")
    deny = build_deny(banlist, findings, config, DEVICE, NOW, Runner())
    assert deny.paths == {str(program): "banned-app"}
    guard = started(ExecGuard(deny, [str(mount)]))
    try:
        assert not runs(program)
        assert runs(innocent)
    finally:
        guard.stop()


def everything(max_actions: int):
    """`names: ["*"]` against this machine's dpkg database and processes (read only)."""
    need("dpkg")
    if not Path("/var/lib/dpkg/status").exists():
        pytest.skip("this machine has no dpkg database")
    banlist, findings = findings_on(Path("/"), ["dpkg", "process"], [{"id": "everything", "match": {"names": ["*"]}}])
    config = parse_config(config_yaml(Path("/"), Path("/nonexistent-appban-state"), max_actions=max_actions,
                                      audit_log=os.devnull).encode(), "config")
    return banlist, findings, config


def test_a_list_that_matches_everything_is_refused_whole() -> None:
    """Issue 11 items 2 and 3: `names: ["*"]` put 96,322 files on the deny list and killed 8 of 9
    processes. Now the plan and the deny list are each refused whole by the one cap."""
    banlist, findings, config = everything(max_actions=5)
    assert len(findings) > 100
    the_plan = plan(findings, config.enforcement, DEVICE, host_facts(findings, Runner()))
    assert the_plan.note.startswith(TOO_MANY) and all(a.refused for a in the_plan.actions)
    assert {a.kind for a in the_plan.actions} >= {"kill", "uninstall"}
    deny = build_deny(banlist, findings, config, DEVICE, NOW, Runner())
    assert not deny and deny.refused.startswith(TOO_MANY) and "deny-exec package" in deny.refused
    for program in ("/usr/bin/python3", sys.executable, "/usr/bin/ssh", "/usr/bin/curl", "/bin/sh"):
        assert deny.verdict(os.path.realpath(program), lambda: "") == ""


def test_even_under_a_huge_cap_the_shells_login_path_and_agent_are_never_denied() -> None:
    banlist, findings, config = everything(max_actions=10**9)
    deny = build_deny(banlist, findings, config, DEVICE, NOW, Runner())
    assert len(deny.paths) > 1000  # the rest of the machine would be denied: the cap is the admin's choice
    kept = {sys.executable, *agent_files(), *shells("/")}
    kept |= {p for p in ("/usr/bin/ssh", "/usr/sbin/sshd", "/usr/bin/login", "/usr/bin/su", "/usr/sbin/agetty",
                         "/usr/bin/sudo", "/usr/lib/systemd/systemd", "/usr/bin/dash", "/usr/bin/bash")
             if os.path.exists(p)}
    for path in sorted(kept):
        assert deny.verdict(os.path.realpath(path), lambda: "") == "", path
        assert os.path.realpath(path) not in deny.paths
    venv_lib = Path(os.__file__).parent
    assert not any(Path(p).is_relative_to(venv_lib) for p in deny.paths)
    assert deny.verdict(os.path.realpath(os.__file__), lambda: "") == ""


def test_the_dry_run_says_the_deny_list_is_refused() -> None:
    banlist, findings, config = everything(max_actions=5)
    config = replace(config, enforcement=replace(config.enforcement, guard="fapolicyd"))
    out = io.StringIO()
    write_fapolicyd_rules(banlist, findings, config, DEVICE, Runner(), out, NOW, dry_run=True)
    assert "write fapolicyd rules" in out.getvalue() and f"deny list refused: {TOO_MANY}" in out.getvalue()


def test_a_hash_rule_never_denies_a_file_of_an_rpm_base_package(mount: Path) -> None:  # noqa: F811
    """rpm has no Essential mark: a package of the base system by name (here a real rpm named
    `coreutils` in a real rpm database) keeps its files from a hash rule that matches them,
    while the same bytes elsewhere are denied."""
    need("rpmbuild")
    root, work = mount / "sys", mount / "work"
    work.mkdir()
    script = "#!/bin/sh\nexit 0\n"
    rpm_install(root, "/var/lib/rpm", build_rpm(work, "coreutils", "9.0", "1", {"/usr/bin/lsx": script}))
    base = root / "usr/bin/lsx"
    base.chmod(0o755)
    copy = _program(root, unique("copy"))
    digest = hashlib.sha256(script.encode()).hexdigest()
    banlist, findings = findings_on(root, ["rpm"], [{"id": "by-hash", "match": {"sha256": [digest]}}])
    config = parse_config(config_yaml(root, mount / "state").encode(), "config")
    deny = build_deny(banlist, findings, config, DEVICE, NOW, Runner())
    assert deny.sha256 == {digest: "by-hash"} and str(base) in deny.allowed
    guard = started(ExecGuard(deny, [str(mount)], deadline=30.0))  # hashing never fails open here
    try:
        assert runs(base)
        assert not runs(copy)
    finally:
        guard.stop()


def test_a_symlink_in_a_banned_package_never_denies_the_file_it_points_to(mount: Path) -> None:  # noqa: F811
    """A banned package may ship a link to another package's program (as update-alternatives
    links do): the guard denies the banned package's own files, never the link's target."""
    root = make_dpkg_root(mount / "sys")
    work = mount / "work"
    work.mkdir()
    banned, other = unique("appban-test-banned"), unique("appban-test-other")
    assert dpkg(root, "-i", str(build_deb(work, other, {other: Path("/bin/true")}))).returncode == 0
    tree = work / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr/bin").mkdir(parents=True)
    shutil.copy("/bin/true", tree / "usr/bin" / banned)
    (tree / "usr/bin" / f"{banned}-link").symlink_to(other)
    (tree / "DEBIAN/control").write_text(f"Package: {banned}\nVersion: 1.0\nArchitecture: all\n"
                                         "Maintainer: appban tests <tests@example.org>\nDescription: test\n")
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(work / "banned.deb")],
                   check=True, capture_output=True, timeout=60)
    assert dpkg(root, "-i", str(work / "banned.deb")).returncode == 0
    banlist, findings = findings_on(root, ["dpkg"], [{"id": "banned", "match": {"deb": [banned]}}])
    config = parse_config(config_yaml(root, mount / "state").encode(), "config")
    deny = build_deny(banlist, findings, config, DEVICE, NOW, Runner())
    assert deny.paths == {str(root / "usr/bin" / banned): "banned"}
    guard = started(ExecGuard(deny, [str(mount)]))
    try:
        assert not runs(root / "usr/bin" / banned)
        assert runs(root / "usr/bin" / other) and runs(root / "usr/bin" / f"{banned}-link")
    finally:
        guard.stop()
