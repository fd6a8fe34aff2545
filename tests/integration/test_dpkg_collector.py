"""The dpkg collector against real dpkg databases: one built here, and this machine's own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.inventory import collect, dpkg
from agent.inventory.base import Context
from agent.inventory.dpkg import _HEADER, DpkgCollector, package_files, path_owners
from tests.conftest import require_tool
from tests.debs import build_deb, dpkg_root, install


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    require_tool("dpkg-deb")
    work = tmp_path_factory.mktemp("debs")
    root = dpkg_root(work / "root")
    debs = [
        build_deb(work, "wps-office", "11.1.0.11719", files={"/opt/kingsoft/wps-office/office6/wps": "#!/bin/sh\n"},
                  maintainer="Kingsoft Office <wps@example.invalid>"),
        build_deb(work, "appban-test-tool", "2.0-1", arch="amd64", files={"/usr/bin/appban-test-tool": "#!/bin/sh\n"}),
    ]
    install(root, *debs)
    return root


def dpkg_query(root: Path) -> set[tuple[str, str]]:
    out = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${db:Status-Abbrev}|${Package}|${Version}\n"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout
    return {(p, v) for s, p, v in (line.split("|") for line in out.splitlines()) if s.startswith("ii")}


def test_finds_packages_installed_by_real_dpkg(root):
    apps = DpkgCollector().collect(Context(root=root, live=False)).apps
    by_id = {a.id: a for a in apps}
    assert by_id["wps-office"].version == "11.1.0.11719"
    assert by_id["wps-office"].publisher.startswith("Kingsoft Office")
    assert by_id["appban-test-tool"].extra_value("arch") == "amd64"
    assert "appban-test-tool:amd64" in by_id["appban-test-tool"].aliases


def test_agrees_with_dpkg_query_on_the_same_database(root):
    apps = DpkgCollector().collect(Context(root=root, live=False)).apps
    assert {(a.id, a.version) for a in apps} == dpkg_query(root)


@pytest.mark.parametrize("where", ["built here", "this machine"])
def test_records_dpkg_wrote_are_read_one_match_each(root, where):
    """The fast reading (one match per record, its fields in dpkg's order) must be the one taken
    on databases dpkg itself wrote; reading line by line is for files written by hand."""
    path = root / "var/lib/dpkg/status" if where == "built here" else Path("/var/lib/dpkg/status")
    if not path.exists():
        pytest.skip("no dpkg database on this machine")
    data = b"\n" + path.read_bytes()
    rows = _HEADER.findall(data)
    assert len(rows) == data.count(b"\nPackage:") > 0
    assert {row[-1] for row in rows} == {b""}  # no line of a WANTED field was left outside its record's match


def test_removed_package_with_config_files_left_is_not_installed(tmp_path):
    require_tool("dpkg-deb")
    root = dpkg_root(tmp_path / "root")
    conf = build_deb(tmp_path, "appban-conf", files={"/etc/appban-conf.conf": "x=1\n"},
                     conffiles=("/etc/appban-conf.conf",))
    install(root, conf)
    subprocess.run(["dpkg", f"--root={root}", "--force-not-root", "--force-script-chrootless", "--log=/dev/null",
                    "-r", "appban-conf"], check=True, capture_output=True, timeout=60)
    status = (root / "var/lib/dpkg/status").read_text()
    assert "Status: deinstall ok config-files" in status
    assert DpkgCollector().collect(Context(root=root, live=False)).apps == []


def test_file_lists_name_the_executables_a_package_owns(root):
    assert "/opt/kingsoft/wps-office/office6/wps" in package_files(str(root), "wps-office")


def test_agrees_with_dpkg_query_on_this_machine():
    require_tool("dpkg-query")
    apps = DpkgCollector().collect(Context()).apps
    assert {(a.id, a.version) for a in apps} == dpkg_query(Path("/"))


def test_path_owners_agree_with_dpkg_query_search(root):
    """The list scan reads likely lists first and stops once every path is placed; the answer
    must still be dpkg's own (`dpkg-query -S`), for owned files and for a file no one owns."""
    require_tool("dpkg-query")
    paths = ["/usr/bin/appban-test-tool", "/opt/kingsoft/wps-office/office6/wps", "/usr/bin/no-such-tool"]
    search = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-S", *paths],
                            capture_output=True, text=True, timeout=60)
    expected = {path: owner for owner, _, path in (line.partition(": ") for line in search.stdout.splitlines())}
    assert path_owners(Context(root=root, live=False), paths) == expected
    assert set(expected) == set(paths[:2])


def test_path_owners_agree_with_dpkg_query_search_on_this_machine():
    require_tool("dpkg-query")
    lists = sorted(Path("/var/lib/dpkg/info").glob("*.list"))[::50]
    files = [line for path in lists for line in path.read_text().splitlines()[-2:] if Path(line).is_file()]
    search = subprocess.run(["dpkg-query", "-S", *files], capture_output=True, text=True, timeout=60)
    expected = {path: owner.partition(":")[0] for owner, _, path in (line.partition(": ") for line in search.stdout.splitlines())
                if "," not in owner and not owner.startswith("diversion")}
    found = path_owners(Context(), files)
    assert files and {path: found.get(path) for path in expected} == expected


def test_a_broken_database_is_one_error_and_other_collectors_still_run(tmp_path):
    root = tmp_path / "root"
    (root / "var/lib/dpkg/status").mkdir(parents=True)  # a folder where the file should be
    apps_dir = root / "usr/share/applications"
    apps_dir.mkdir(parents=True)
    (apps_dir / "wechat.desktop").write_text("[Desktop Entry]\nType=Application\nName=WeChat\nExec=/opt/wechat/wechat %U\n")
    inventory = collect(Context(root=root, live=False), ["dpkg", "desktop"])
    assert [e.collector for e in inventory.errors] == ["dpkg"]
    assert "IsADirectoryError" in inventory.errors[0].message
    assert [a.name for a in inventory.apps] == ["WeChat"]


def test_collected_packages_are_the_collectors_records_on_the_host(root):
    """`collect` hands the host's id to the collector (Context.device): the records it returns
    are the ones a copy onto the host would give."""
    ctx = Context(root=root, live=False)
    inventory = collect(ctx, ["dpkg"])
    host = inventory.devices[0].id
    assert host != "local"
    assert list(inventory.apps) == [app.on_device(host) for app in DpkgCollector().collect(ctx).apps]


def _owners_from_every_list(root: Path) -> dict[str, set[str]]:
    """{path: every package whose list names it}: what reading all of `info/*.list` gives."""
    owners: dict[str, set[str]] = {}
    for listed in (root / "var/lib/dpkg/info").glob("*.list"):
        if listed.is_file():
            for line in listed.read_text().splitlines():
                owners.setdefault(line, set()).add(listed.name[:-5].partition(":")[0])
    return owners


def test_path_owners_answer_as_reading_every_list_does(tmp_path):
    """Namesakes are read first and the scan stops early; the answer must still be what reading
    every list gives: for a launcher in a `-common` package beside its namesake, one whose stem
    has a dot (python3.11), one no namesake owns, a file nobody owns, a diverted file (in the
    lists of its package and of the diverter: either may be named), next to an unreadable list."""
    require_tool("dpkg-deb")
    require_tool("dpkg-divert")
    root = dpkg_root(tmp_path / "root")
    apps = "/usr/share/applications"
    install(root, *(build_deb(tmp_path, name, files=files) for name, files in (
        ("viewer", {"/usr/bin/viewer": "#!/bin/sh\n"}),
        ("viewer-common", {f"{apps}/viewer.desktop": "[Desktop Entry]\n"}),
        ("viewer-data", {"/usr/share/viewer/data": "x\n"}),
        ("tool2.1", {f"{apps}/tool2.1.desktop": "[Desktop Entry]\n"}),
        ("tool2-extra", {"/usr/share/tool2/extra": "x\n"}),
        ("zz-unrelated", {f"{apps}/other.desktop": "[Desktop Entry]\n"}),
    )))
    subprocess.run(["dpkg-divert", f"--root={root}", "--package", "zz-diverter", "--rename",
                    "--divert", "/usr/bin/viewer.real", "--add", "/usr/bin/viewer"], check=True, capture_output=True, timeout=60)
    install(root, build_deb(tmp_path, "zz-diverter", files={"/usr/bin/viewer": "#!/bin/sh\nexec viewer.real\n"}))
    (root / "var/lib/dpkg/info/viewer-broken.list").mkdir()
    paths = [f"{apps}/viewer.desktop", f"{apps}/tool2.1.desktop", f"{apps}/other.desktop", "/usr/bin/viewer",
             "/usr/bin/nobody", "/usr/share/viewer/data"]
    every = _owners_from_every_list(root)
    assert every["/usr/bin/viewer"] == {"viewer", "zz-diverter"}
    found = path_owners(Context(root=root, live=False), paths)
    assert set(found) == {path for path in paths if path in every}
    assert all(found[path] in every[path] for path in found)
    assert {path: owner for path, owner in found.items() if len(every[path]) == 1} == {
        f"{apps}/viewer.desktop": "viewer-common", f"{apps}/tool2.1.desktop": "tool2.1",
        f"{apps}/other.desktop": "zz-unrelated", "/usr/share/viewer/data": "viewer-data"}


def test_path_owners_read_only_namesakes_when_they_place_every_path(tmp_path, monkeypatch):
    """Once a launcher is placed its namesakes are no longer read first: placing viewer.desktop
    and tool2.1.desktop reads their packages' lists, not the other namesakes' (the point of the
    order; on a real machine, dozens of `python3-…` lists for python3.11.desktop)."""
    require_tool("dpkg-deb")
    root = dpkg_root(tmp_path / "root")
    apps = "/usr/share/applications"
    names = ["viewer", "viewer-common", "viewer-data", "viewer-doc", "tool2.1", "tool2-extra", "tool2-more"]
    files = {"viewer-common": {f"{apps}/viewer.desktop": "x\n"}, "tool2.1": {f"{apps}/tool2.1.desktop": "x\n"}}
    install(root, *(build_deb(tmp_path, name, files=files.get(name, {f"/usr/share/{name}/f": "x\n"})) for name in names))
    read: list[str] = []
    real = dpkg.read_text
    monkeypatch.setattr(dpkg, "read_text", lambda path, *args, **kwargs: read.append(Path(path).name) or real(path, *args, **kwargs))
    found = path_owners(Context(root=root, live=False), [f"{apps}/viewer.desktop", f"{apps}/tool2.1.desktop"])
    assert found == {f"{apps}/viewer.desktop": "viewer-common", f"{apps}/tool2.1.desktop": "tool2.1"}
    assert set(read) <= {"viewer.list", "viewer-common.list", "viewer-data.list", "viewer-doc.list", "tool2.1.list"}
    assert "tool2-extra.list" not in read and "tool2-more.list" not in read
