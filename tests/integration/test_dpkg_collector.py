"""The dpkg collector against real dpkg databases: one built here, and this machine's own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.inventory import collect
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
