"""The dpkg and rpm collectors against real databases: real packages built with dpkg-deb and
rpmbuild, installed by the real dpkg and rpm into a throwaway root, and the collectors' answers
compared with `dpkg-query -W` and `rpm -qa` on that same database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.inventory import base, collect
from agent.inventory.dpkg import DpkgCollector, package_files
from agent.inventory.owned import app_files
from agent.inventory.preconditions import rpm_dbpath
from agent.inventory.rpm import RpmCollector, rpm_package_files
from agent.runner import Runner
from tests.conftest import require_tool
from tests.debs import build_deb, dpkg_root, install
from tests.linux_roots import build_rpm, context, dpkg, rpm_install, run

LAUNCHER = "[Desktop Entry]\nType=Application\nName=Hello Deb\nExec=hello-deb %U\n"


@pytest.fixture(scope="module")
def deb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with: hello-deb (launcher + binary), libmulti for amd64 and i386 (Multi-Arch: same),
    and gone-deb removed but with its conffile left (state config-files)."""
    for tool in ("dpkg", "dpkg-deb", "dpkg-query"):
        require_tool(tool)
    work = tmp_path_factory.mktemp("debs")
    root = dpkg_root(work / "root")
    dpkg(root, "--add-architecture", "i386")
    same = "Multi-Arch: same\n"
    debs = [
        build_deb(work, "hello-deb", "1:2.0-1", "amd64", {
            "/usr/bin/hello-deb": "#!/bin/sh\n", "/usr/share/applications/hello-deb.desktop": LAUNCHER}),
        build_deb(work, "libmulti", "3.1-2", "amd64", {"/usr/lib/x86_64-linux-gnu/libmulti.so.3": "x"},
                  extra_control=same),
        build_deb(work, "libmulti", "3.1-2", "i386", {"/usr/lib/i386-linux-gnu/libmulti.so.3": "x"},
                  extra_control=same),
        build_deb(work, "gone-deb", "1.0", "all", {"/etc/gone.conf": "a=1\n"}, conffiles=("/etc/gone.conf",)),
    ]
    install(root, *debs)
    dpkg(root, "--remove", "gone-deb")
    return root


def test_dpkg_collector_agrees_with_dpkg_query(deb_root: Path) -> None:
    listed = run("dpkg-query", f"--admindir={deb_root}/var/lib/dpkg", "-W",
                 "-f", "${Package}\t${Architecture}\t${Version}\t${db:Status-Status}\n")
    expected = sorted(tuple(line.split("\t")[:3]) for line in listed.splitlines() if line.endswith("\tinstalled"))
    apps = DpkgCollector().collect(context(deb_root)).apps
    assert sorted((a.id, a.extra_value("arch"), a.version) for a in apps) == expected
    assert {"gone-deb"} == {line.split("\t")[0] for line in listed.splitlines() if "config-files" in line}
    assert {a.id for a in apps} == {"hello-deb", "libmulti"}


def test_dpkg_multiarch_packages_answer_to_name_colon_arch(deb_root: Path) -> None:
    apps = [a for a in DpkgCollector().collect(context(deb_root)).apps if a.id == "libmulti"]
    assert sorted(a.aliases for a in apps) == [("libmulti:amd64",), ("libmulti:i386",)]
    assert {a.extra_value("multi_arch") for a in apps} == {"same"}


def test_dpkg_file_lists_match_dpkg_query_listfiles(deb_root: Path) -> None:
    for package, arch in (("hello-deb", "amd64"), ("libmulti", "i386")):
        listed = run("dpkg-query", f"--admindir={deb_root}/var/lib/dpkg", "-L", f"{package}:{arch}")
        assert package_files(str(deb_root), package, arch) == listed.splitlines()
    hello = next(a for a in DpkgCollector().collect(context(deb_root)).apps if a.id == "hello-deb")
    assert "/usr/bin/hello-deb" in (app_files(context(deb_root), hello) or [])


def test_a_packaged_launcher_is_folded_into_its_package(deb_root: Path) -> None:
    inventory = collect(context(deb_root), ["dpkg", "desktop"])
    assert [a for a in inventory.apps if a.source == "desktop"] == []
    hello = next(a for a in inventory.apps if a.id == "hello-deb")
    assert hello.name == "Hello Deb"
    assert hello.extra_value("launchers") == "/usr/share/applications/hello-deb.desktop"
    alone = collect(context(deb_root), ["desktop"]).apps
    assert [(a.name, a.path, a.extra_value("owner")) for a in alone] == [
        ("Hello Deb", "/usr/bin/hello-deb", "dpkg:hello-deb")]


def test_truncated_dpkg_status_is_one_error_and_keeps_complete_records(deb_root: Path, tmp_path: Path) -> None:
    admin = dpkg_root(tmp_path) / "var/lib/dpkg"
    text = (deb_root / "var/lib/dpkg/status").read_text()
    (admin / "status").write_text(text[: text.rindex("Package: ") + 30])
    inventory = collect(context(tmp_path), ["dpkg"])
    assert [e.collector for e in inventory.errors] == ["dpkg"]
    assert "truncated" in inventory.errors[0].message
    assert len(inventory.apps) >= 2


# --- rpm ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rpm_packages(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    require_tool("rpm")
    require_tool("rpmbuild")
    work = tmp_path_factory.mktemp("rpms")
    return [
        build_rpm(work, "hello-rpm", "1.5", "3", {
            "/usr/bin/hello-rpm": "#!/bin/sh\n",
            "/usr/share/applications/hello-rpm.desktop": LAUNCHER.replace("deb", "rpm").replace("Deb", "Rpm"),
        }, epoch="2", vendor="Appban Test Vendor"),
        build_rpm(work, "plain-rpm", "0.9", "1.fc40", {"/usr/share/plain-rpm/README": "x\n"}),
    ]


@pytest.mark.parametrize("dbpath", ["/var/lib/rpm", "/usr/lib/sysimage/rpm"])
def test_rpm_collector_agrees_with_rpm_qa(rpm_packages: list[Path], tmp_path: Path, dbpath: str) -> None:
    rpm_install(tmp_path, dbpath, *rpm_packages)
    ctx = context(tmp_path)
    assert rpm_dbpath(ctx) == dbpath
    listed = run("rpm", "--root", tmp_path, "--dbpath", dbpath, "-qa", "--qf",
                 "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{VENDOR}\n")
    expected = sorted(listed.replace(" 0:", " ").replace("(none)", "").strip().splitlines())
    apps = RpmCollector().collect(ctx).apps
    assert sorted(f"{a.id} {a.version} {a.publisher}".strip() for a in apps) == [e.strip() for e in expected]
    hello = next(a for a in apps if a.id == "hello-rpm")
    assert (hello.version, hello.extra_value("epoch"), hello.extra_value("release")) == ("2:1.5-3", "2", "3")


def test_rpm_file_lists_and_launcher_owners(rpm_packages: list[Path], tmp_path: Path) -> None:
    rpm_install(tmp_path, "/var/lib/rpm", *rpm_packages)
    listed = run("rpm", "--root", tmp_path, "--dbpath", "/var/lib/rpm", "-ql", "hello-rpm").splitlines()
    assert rpm_package_files(Runner(), str(tmp_path), "/var/lib/rpm", "hello-rpm") == listed
    assert "/usr/bin/hello-rpm" in listed
    inventory = collect(context(tmp_path), ["rpm", "desktop"])
    assert not inventory.errors
    assert [a for a in inventory.apps if a.source == "desktop"] == []
    assert next(a for a in inventory.apps if a.id == "hello-rpm").name == "Hello Rpm"


def test_truncated_rpm_database_is_one_error_and_the_rest_survives(
    rpm_packages: list[Path], deb_root: Path, tmp_path: Path,
) -> None:
    rpm_install(tmp_path, "/var/lib/rpm", *rpm_packages)
    run("rpm", "--root", tmp_path, "--dbpath", "/var/lib/rpm", "--rebuilddb")
    for leftover in (tmp_path / "var/lib/rpm").glob("rpmdb.sqlite-*"):
        leftover.unlink()
    db = tmp_path / "var/lib/rpm/rpmdb.sqlite"
    db.write_bytes(db.read_bytes()[:1000])
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text((deb_root / "var/lib/dpkg/status").read_text())
    inventory = collect(context(tmp_path), [])
    assert [e.collector for e in inventory.errors] == ["rpm"]
    assert inventory.errors[0].message.startswith("CommandError: rpm")
    assert {a.id for a in inventory.apps if a.source == "dpkg"} == {"hello-deb", "libmulti"}


def test_rpm_database_without_the_rpm_command_is_an_error(rpm_packages: list[Path], tmp_path: Path) -> None:
    rpm_install(tmp_path, "/var/lib/rpm", *rpm_packages)
    ctx = context(tmp_path)
    ctx = type(ctx)(root=ctx.root, live=False, runner=Runner(commands={"rpm": str(tmp_path / "no-rpm")}))
    inventory = collect(ctx, [])
    assert [(e.collector, e.message) for e in inventory.errors] == [("rpm", "CommandError: rpm: command not found")]


def test_a_collector_that_fails_while_checking_availability_is_one_error(
    deb_root: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    (deb_root / "home").mkdir(exist_ok=True)
    real_entries = base.folder_entries

    def folder_entries(path, *, root):  # these tests run as root, whom a mode of 000 does not stop
        if os.fspath(path) == str(deb_root / "home"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_entries(path, root=root)

    monkeypatch.setattr(base, "folder_entries", folder_entries)
    inventory = collect(context(deb_root), ["dpkg", "flatpak"])
    assert [(e.collector, "Permission denied" in e.message) for e in inventory.errors] == [("flatpak", True)]
    assert "hello-deb" in {a.id for a in inventory.apps}
