"""Pure parts of the Linux collectors: the record parsers and the launcher folding rule."""

from __future__ import annotations

import os
import struct
import xml.etree.ElementTree as ET
from dataclasses import replace
from typing import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.inventory.appimage import appimage_type, elf_size, name_version
from agent.inventory.dedupe import merge_launchers
from agent.inventory import dpkg
from agent.inventory.dpkg import parse_status
from agent.inventory.flatpak import appstream_facts, deploy_origin, read_keyfile
from agent.inventory.rpm import parse_query
from agent.inventory.snap import assertion_headers, snap_yaml_facts
from agent.model import App


@pytest.mark.parametrize(("status", "installed"), [
    ("install ok installed", True),
    ("hold ok installed", True),
    ("deinstall ok config-files", False),
    ("install reinstreq half-installed", False),
    ("install ok unpacked", False),
    ("install ok half-configured", False),
    ("install ok triggers-pending", False),
    ("purge ok not-installed", False),
    ("install ok", False),
    # Exactly three words, the third `installed` (a mutant that only checked the last word let
    # these through, issue 11): a damaged or hand-edited record is not an installed package.
    ("ok installed", False),
    ("install ok not installed", False),
    ("installed", False),
    ("hold reinstreq ok installed", False),
])
def test_dpkg_counts_only_the_installed_state(status: str, installed: bool) -> None:
    text = f"Package: p\nStatus: {status}\nArchitecture: amd64\nVersion: 1.0\n\n"
    assert bool(parse_status(text)) is installed


def test_dpkg_record_fields_and_continuation_lines() -> None:
    text = ("Package: zoom\nStatus: install ok installed\nMaintainer: Zoom <a@b>\nArchitecture: amd64\n"
            "Version: 6.0\nDescription: x\n Package: fake\n Version: 9\n\n"
            "Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2024a\n")
    apps = parse_status(text)
    assert [(a.id, a.version, a.aliases, a.extra_value("arch")) for a in apps] == [
        ("zoom", "6.0", ("zoom:amd64",), "amd64"), ("tzdata", "2024a", (), "all")]
    assert apps[0].publisher == "Zoom <a@b>"


def test_rpm_query_output() -> None:
    text = ("zoom\t(none)\t6.0.2\t4680\tx86_64\tZoom Video Communications\t(none)\n"
            "gpg-pubkey\t(none)\tabcd\t1234\t(none)\t(none)\t(none)\n"
            "kernel\t1\t6.8\t300.fc40\tx86_64\tFedora Project\tFedora Project\n"
            "broken line\n")
    apps = parse_query(text)
    assert [(a.id, a.version, a.publisher, a.aliases) for a in apps] == [
        ("zoom", "6.0.2-4680", "Zoom Video Communications", ("zoom.x86_64",)),
        ("kernel", "1:6.8-300.fc40", "Fedora Project", ("kernel.x86_64",))]
    assert apps[1].extra_value("epoch") == "1" and apps[0].extra_value("epoch") == ""


def test_flatpak_deploy_origin_and_keyfile() -> None:
    assert deploy_origin(b"flathub\x0008db2360\x00\x00") == "flathub"
    assert deploy_origin(b"flath") == ""
    meta = read_keyfile("[Application]\nname=org.A\nruntime=org.P/x86_64/1\n", "metadata")
    assert meta.get("Application", "runtime") == "org.P/x86_64/1"
    with pytest.raises(ValueError, match="metadata: not a valid keyfile"):
        read_keyfile("[Application\nname=x\n", "metadata")


def test_appstream_facts_pick_the_unlocalized_name_and_newest_release() -> None:
    doc = ET.fromstring(
        "<components><component><id>org.Other</id><name>Other</name></component>"
        "<component><id>org.A.desktop</id><name xml:lang='de'>Ein A</name><name>An A</name>"
        "<developer_name>A Inc</developer_name><releases><release version='2.0'/><release version='1.0'/>"
        "</releases></component></components>")
    assert appstream_facts(doc, "org.A") == {"name": "An A", "version": "2.0", "publisher": "A Inc"}
    assert appstream_facts(doc, "org.Missing") == {}


def test_snap_yaml_and_assertion_headers() -> None:
    assert snap_yaml_facts("name: zoom-client\nversion: '6.0'\napps:\n  zoom:\n    name: inner\n") == {
        "name": "zoom-client", "version": "6.0"}
    headers = assertion_headers("type: account\nusername: zoom\nlist:\n  - a\n\nsignature-body\nusername: fake\n")
    assert headers["username"] == "zoom" and headers["type"] == "account"


@pytest.mark.parametrize(("filename", "expected"), [
    ("Signal-7.2.1-x86_64.AppImage", ("Signal", "7.2.1")),
    ("balenaEtcher-1.18.11-x64.AppImage", ("balenaEtcher", "1.18.11")),
    ("Obsidian-1.5.3.AppImage", ("Obsidian", "1.5.3")),
    ("cursor_0.45_amd64.appimage", ("cursor", "0.45")),
    ("MyApp.AppImage", ("MyApp", "")),
    ("kdenlive-24.02.1-x86_64.AppImage", ("kdenlive", "24.02.1")),
])
def test_appimage_name_and_version_from_file_name(filename: str, expected: tuple[str, str]) -> None:
    assert name_version(filename) == expected


def test_appimage_magic() -> None:
    assert appimage_type(b"\x7fELF\x02\x01\x01\x00AI\x02") == 2
    assert appimage_type(b"\x7fELF\x02\x01\x01\x00AI\x01") == 1
    assert appimage_type(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00") == 0
    assert appimage_type(b"#!/bin/sh\nAI\x02") == 0
    assert appimage_type(b"\x7fELF") == 0


def _launcher(name: str, path: str = "", owner: str = "", user: str = "") -> App:
    extra = [("launcher", f"/usr/share/applications/{name}.desktop")] + ([("owner", owner)] if owner else [])
    return App(source="desktop", id=name.lower(), name=name, path=path, user=user, extra=tuple(extra))


def test_merge_takes_the_display_name_and_keeps_a_second_distinct_name() -> None:
    package = App(source="dpkg", id="libreoffice-common", name="libreoffice-common")
    writer = _launcher("LibreOffice Writer", owner="dpkg:libreoffice-common")
    calc = _launcher("LibreOffice Calc", owner="dpkg:libreoffice-common")
    merged = merge_launchers([package, writer, calc])
    assert [(a.source, a.name) for a in merged] == [("dpkg", "LibreOffice Writer"), ("desktop", "LibreOffice Calc")]
    assert merged[0].extra_value("launchers") == "/usr/share/applications/LibreOffice Writer.desktop"


def test_merge_matches_users_appimage_paths_and_leaves_orphans() -> None:
    user_flatpak = App(source="flatpak", id="org.A", name="A", user="alice")
    appimage = App(source="appimage", id="A.AppImage", name="A", path="/home/bob/A.AppImage", user="bob")
    launchers = [
        _launcher("A", owner="flatpak:org.A", user="alice"),
        _launcher("A", owner="flatpak:org.A", user="carol"),  # carol has no such flatpak
        _launcher("A", path="/home/bob/A.AppImage", user="bob"),
        _launcher("Orphan", owner="dpkg:not-collected"),
    ]
    merged = merge_launchers([user_flatpak, appimage, *launchers])
    assert [(a.source, a.user) for a in merged] == [
        ("flatpak", "alice"), ("appimage", "bob"), ("desktop", "carol"), ("desktop", "")]


def test_elf_size_is_the_end_of_the_section_header_table() -> None:
    head64 = bytearray(64)
    head64[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", head64, 0x28, 30000)
    struct.pack_into("<HH", head64, 0x3A, 64, 30)
    assert elf_size(bytes(head64)) == 30000 + 64 * 30
    head32 = bytearray(64)
    head32[:6] = b"\x7fELF\x01\x02"
    struct.pack_into(">I", head32, 0x20, 5000)
    struct.pack_into(">HH", head32, 0x2E, 40, 10)
    assert elf_size(bytes(head32)) == 5400
    assert elf_size(b"\x7fELF") == 0


def test_folding_a_launcher_never_hides_an_app_from_the_matcher() -> None:
    from datetime import datetime, timezone

    from agent.banlist.parse import parse_banlist
    from agent.match import compile_banlist, match
    from agent.model import Device

    banlist = parse_banlist(b"""
format: appban.banlist/v1
serial: 1
issued: 2026-01-01T00:00:00Z
entries:
  - {id: by-name, name: WeChat, match: {names: ["wechat*"]}}
  - {id: by-exe, name: WeChat, match: {executables: [wechat]}}
  - {id: snap-exe, name: Other, match: {executables: [other-bin]}}
""")
    package = App(source="dpkg", id="wechat", name="wechat", device="pc")
    launcher = replace(_launcher("\u5fae\u4fe1", path="/usr/bin/wechat", owner="dpkg:wechat"), device="pc")
    snap = App(source="snap", id="other", name="Other", path="/snap/other/7", device="pc")
    snap_launcher = replace(_launcher("Other", path="/snap/bin/other-bin", owner="snap:other"), device="pc")
    apps = [package, launcher, snap, snap_launcher]
    compiled, devices = compile_banlist(banlist), {"pc": Device(id="pc")}
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    before = {f.entry.id for f in match(apps, devices, compiled, now)}
    assert before == {"by-name", "by-exe", "snap-exe"}
    merged = merge_launchers(apps)
    assert [a.source for a in merged] == ["dpkg", "snap"]  # still counted once
    assert {f.entry.id for f in match(merged, devices, compiled, now)} == before


@pytest.mark.parametrize(("line", "program"), [
    ("/usr/bin/tiktok %U", "/usr/bin/tiktok"),
    ("env BAMF_DESKTOP_FILE_HINT=x /snap/bin/telegram-desktop -- %u", "/snap/bin/telegram-desktop"),
    ("env -u GTK_IM_MODULE /opt/tiktok/tiktok", "/opt/tiktok/tiktok"),
    ("env --unset=QT_QPA_PLATFORM -i LANG=C tiktok %F", "tiktok"),
    ("env -C /opt/app ./run", "./run"),
])
def test_exec_program_skips_env_and_its_options(line: str, program: str) -> None:
    from agent.inventory.desktop import exec_program

    assert exec_program(line) == program


def _merged_by_a_whole_index(apps: list[App]) -> list[App]:
    """Launchers folded as first written: every record keyed, then each launcher looked up."""
    from agent.inventory import dedupe

    merged = list(apps)
    by_key: dict = {}
    by_path: dict = {}
    for index, app in enumerate(merged):
        if app.source not in ("desktop", "process"):
            by_key.setdefault((app.device, app.source, app.id, app.user), index)
            if app.source == "appimage":
                by_path.setdefault((app.device, app.path), index)
    dropped = set()
    for index, launcher in enumerate(merged):
        if launcher.source != "desktop" or (owner_index := dedupe._owner_key(launcher, by_key, by_path)) is None:
            continue
        owner = merged[owner_index]
        same_name = launcher.name.casefold() == owner.name.casefold()
        if (launcher.user and owner.user != launcher.user) or (not same_name and owner.name and owner.name != owner.id):
            continue
        extra = dict(owner.extra)
        dedupe._append(extra, "launchers", launcher.extra_value("launcher"))
        dedupe._append(extra, "launcher_programs", os.path.basename(launcher.path))
        if not same_name and owner.name:
            dedupe._append(extra, "former_names", owner.name)
        merged[owner_index] = replace(owner, name=owner.name if same_name else launcher.name, extra=tuple(sorted(extra.items())))
        dropped.add(index)
    return [app for index, app in enumerate(merged) if index not in dropped]


_FOLDABLE = st.builds(
    lambda source, ident, name, user, path, owner, device: App(
        source=source, id=ident, name=name or ident, user=user, path=path, device=device,
        extra=((("launcher", f"/usr/share/applications/{ident}.desktop"),) + ((("owner", owner),) if owner else ()))
        if source == "desktop" else ()),
    st.sampled_from(["dpkg", "desktop", "process", "appimage", "flatpak"]), st.sampled_from(["vim", "tiktok", "x"]),
    st.sampled_from(["", "Vim", "vim", "TikTok"]), st.sampled_from(["", "alice"]),
    st.sampled_from(["", "/usr/bin/vim", "/opt/TikTok.AppImage"]),
    st.sampled_from(["", "dpkg:vim", "flatpak:tiktok", "appimage:x", "dpkg:none"]), st.sampled_from(["pc", "phone"]))


@settings(max_examples=400, deadline=None)
@given(st.lists(_FOLDABLE, max_size=10))
def test_launchers_fold_as_with_an_index_of_every_record(apps: list[App]) -> None:
    """Indexing only the ids the launchers' owners name (and the AppImages) folds as keying
    every record did: the same records, in the same order."""
    assert merge_launchers(apps) == _merged_by_a_whole_index(apps)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(" \t\r\n\x0b\x0c\x85\xa0\u2028'\"\\%=#;|&$ab-/")), max_size=30))
def test_exec_words_are_shlex_split(line: str) -> None:
    """Words of an Exec= line are what shlex.split gives (or a plain split where it cannot),
    whether or not the line has anything to unquote."""
    import shlex

    from agent.inventory.desktop import exec_words

    try:
        expected = shlex.split(line)
    except ValueError:
        expected = line.split()
    assert exec_words(line) == expected


_LIST_NAME = st.text(alphabet=st.sampled_from(list("abvV:.-1ß*[(|+")), max_size=8)


@settings(max_examples=300, deadline=None)
@given(names=st.lists(st.tuples(_LIST_NAME, st.sampled_from([".list", ".md5sums", ":amd64.list", "", ".list.list"])),
                      max_size=12).map(lambda pairs: list(dict.fromkeys(n + s for n, s in pairs))),
       files=st.lists(_LIST_NAME, min_size=1, max_size=3))
def test_lists_named_like_a_file_are_those_a_test_of_each_list_finds(names: list[str], files: list[str]) -> None:
    """dpkg's `_named_like` cuts the lists out of the joined listing and searches the stems as
    one pattern; it keeps what testing each `*.list` name's package against each stem keeps, in
    the folder's order (regex characters, colons, `.list.list`, case and ß included)."""
    stems = set().union(*(dpkg._stems(f"/usr/share/applications/{file}.desktop") for file in files))
    expected = []
    for name in names:
        package = name[:-5].partition(":")[0].casefold()
        if name.endswith(".list") and any(package in stem or stem in package for stem in stems):
            expected.append((name, package))
    assert list(dpkg._named_like(names, stems)) == expected


def _least_each_time(names: list[str], wanted: set[str], found: dict[str, str]) -> Iterator[str]:
    """The lists in the order first written: every likely list ranked, the least picked again
    after each list, then the rest in the folder's order."""
    stems = {path: dpkg._stems(path) for path in wanted}
    every = set().union(*stems.values())
    likely = {name: dpkg._ranks(package, every) for name, package in dpkg._named_like(names, every)}
    taken = set()
    while likely:
        unplaced = set().union(*(stems[path] for path in wanted if path not in found))
        best = min(likely, key=lambda name: min((r for stem, r in likely[name].items() if stem in unplaced), default=3))
        del likely[best]
        taken.add(best)
        yield best
    yield from (name for name in names if name.endswith(".list") and name not in taken)


def _read(order: Iterator[str], owners: dict[str, str], found: dict[str, str]) -> list[str]:
    """The lists `order` yields until every path is placed, filling `found` as a scan does."""
    read = []
    for name in order:
        read.append(name)
        found.update((path, name) for path, owner in owners.items() if owner == name and path not in found)
        if len(found) == len(owners):
            break
    return read


def test_the_reading_order_is_the_least_ranked_list_after_every_list() -> None:
    """Sorting the likely lists once per path placed, the close namesakes (found by a prefix
    search) before the others, yields the lists in the order that ranking every likely list and
    picking the least again after every list gives (ties in the folder's order): 3,000 seeded
    folders of namesakes, each path owned by one of the names or by none."""
    import random

    words = ["vim", "vim-common", "vim-tiny", "python3", "python3.11", "python3-x", "chromium", "chromium-common",
             "viewer", "x", "lib", "tool2.1"]
    every_name = [w + s for w in words for s in (".list", ":amd64.list", ".md5sums")]
    files = ["/a/vim.desktop", "/a/python3.11.desktop", "/a/chromium.desktop", "/a/viewer.desktop", "/usr/bin/x"]
    pick = random.Random(2)
    for _ in range(3000):
        names = pick.sample(every_name, pick.randint(0, 20))
        paths = pick.sample(files, pick.randint(1, 4))
        owners = {path: pick.choice(names) if names else "" for path in paths}
        found: dict[str, str] = {}
        again: dict[str, str] = {}
        assert (_read(dpkg._reading_order(names, set(paths), found), owners, found)
                == _read(_least_each_time(names, set(paths), again), owners, again)), (names, owners)


def test_a_listing_with_a_newline_in_a_name_has_no_likely_list() -> None:
    """Such a name cannot be cut out of the joined listing (dpkg never writes one): the lists are
    then read in the folder's order, and the answer is the same."""
    assert list(dpkg._named_like(["vim\nx.list", "vim.list"], {"vim"})) == []


def _reference_status(text: str) -> list[tuple[str, str, str, tuple[str, ...], tuple[tuple[str, str], ...]]]:
    """dpkg's status format read line by line, the plain way: a line starting with `Name:` (no
    leading space) is a field, `Package:` starts a record, a repeated field keeps its last value."""
    records: list[dict[str, str]] = []
    for line in text.split("\n"):
        key, colon, value = line.partition(":")
        if not colon or key not in ("Package", "Status", "Version", "Architecture", "Maintainer", "Multi-Arch",
                                    "Essential", "Priority"):
            continue
        if key == "Package":
            records.append({})
        if records:
            records[-1][key] = value.lstrip(" \t").rstrip()
    found = []
    for fields in records:
        status = fields.get("Status", "")
        if not status.endswith(" installed") or len(status.split()) != 3:
            continue
        name, arch = fields["Package"], fields.get("Architecture", "")
        extra = {"arch": arch, "multi_arch": fields.get("Multi-Arch", "")}
        if fields.get("Essential", "").strip().lower() == "yes":
            extra["essential"] = "yes"
        if fields.get("Priority", "").strip().lower() == "required":
            extra["priority"] = "required"
        found.append((name, fields.get("Version", ""), fields.get("Maintainer", ""),
                      (f"{name}:{arch}",) if arch and arch != "all" else (), tuple(sorted((k, v) for k, v in extra.items() if v))))
    return found


_STATUS_LINES = st.sampled_from([
    "Package: a", "Package:b ", "Package: \tc\r", "Status: install ok installed", "Status: hold ok installed ",
    "Status: deinstall ok config-files", "Status:install ok installed", "Version: 1.0", "Version:2", "Architecture: amd64",
    "Architecture: all", "Architecture:", "Maintainer: M <m@x>", "Multi-Arch: same", "Essential: yes", "Essential: Yes ",
    "Priority: required", "Priority: optional", " Package: fake", " continuation", "", "Description: d", "package: lower",
    "Status-Foo: x", "Versions: 3",
])


@settings(max_examples=500)
@given(st.lists(_STATUS_LINES, max_size=16), st.booleans())
def test_dpkg_parser_agrees_with_a_line_by_line_reading(lines: list[str], final_newline: bool) -> None:
    text = "\n".join(lines) + ("\n" if final_newline else "")
    assert [(a.id, a.version, a.publisher, a.aliases, a.extra) for a in parse_status(text)] == _reference_status(text)


_DPKG_ORDER = ("Package", "Essential", "Protected", "Status", "Priority", "Section", "Installed-Size", "Origin",
               "Maintainer", "Bugs", "Architecture", "Multi-Arch", "Source", "Version", "Depends", "Conffiles",
               "Description", "Homepage")
_ODD_VALUES = st.sampled_from([
    b"install ok installed", b"hold ok installed", b"deinstall ok config-files", b"install ok  installed",
    b"yes", b"Yes ", b"required", b"optional", b"amd64", b"all", b"same", b"1:2.3-4", b"M <m@x>", b"", b" ", b"\tx\r",
    b"\xff\xfe", b"caf\xc3\xa9", b"\xc3", b"x\xc2\xa0", b"x\xc2\x85", b"\xe2\x80\xa8y", b"a\x00b", b"\x1bx",
])


@st.composite
def _dpkg_records(draw: st.DrawFn) -> bytes:
    """A status record as dpkg writes it (fields in dpkg's order) with odd values, sometimes
    out of order, with a field twice or a WANTED field in its continuation lines' place."""
    keys = [key for key in _DPKG_ORDER[1:] if draw(st.booleans())]
    if draw(st.integers(0, 9)) == 0:
        keys = draw(st.permutations(keys))
    if keys and draw(st.integers(0, 9)) == 0:
        keys.insert(draw(st.integers(0, len(keys))), draw(st.sampled_from(keys)))
    lines = [b"Package:" + draw(st.sampled_from([b" ", b"", b"\t"])) + draw(st.sampled_from([b"a", b"b:x", b"c\xff"]))]
    for key in keys:
        lines.append(key.encode() + b":" + draw(st.sampled_from([b" ", b"", b"  "])) + draw(_ODD_VALUES))
        if draw(st.integers(0, 7)) == 0:
            lines.append(draw(st.sampled_from([b" continuation", b" Status: install ok installed", b" .", b"\rVersion: 9"])))
    return b"\n".join(lines)


@settings(max_examples=400)
@given(st.lists(_dpkg_records(), max_size=12), st.sampled_from([b"\n", b"", b"\n\n"]), st.sampled_from([b"", b"Status: x\n"]))
def test_dpkg_parser_reads_bytes_as_the_decoded_text_line_by_line(records: list[bytes], end: bytes, before: bytes) -> None:
    """The bytes of a status file give what its text (bad bytes replaced) gives read line by line,
    whether a record comes as dpkg writes it (read whole) or not (read line by line)."""
    data = before + b"\n\n".join(records) + end
    expected = _reference_status(data.decode("utf-8", errors="replace"))
    assert [(a.id, a.version, a.publisher, a.aliases, a.extra) for a in parse_status(data)] == expected


@settings(max_examples=300)
@given(st.lists(_STATUS_LINES, max_size=24), st.integers(min_value=1, max_value=40))
def test_dpkg_parser_gives_the_same_records_whatever_the_slice_size(lines: list[str], size: int) -> None:
    text = "\n".join(lines) + "\n"
    whole = parse_status(text)
    saved, dpkg.SLICE = dpkg.SLICE, size
    try:
        assert parse_status(text) == whole
    finally:
        dpkg.SLICE = saved


@settings(max_examples=100)
@given(st.lists(_dpkg_records(), max_size=8))
def test_dpkg_records_built_on_a_device_are_the_local_ones_copied_onto_it(records: list[bytes]) -> None:
    """`collect` passes the host's id (Context.device) so the records need no copy afterwards."""
    data = b"\n\n".join(records) + b"\n"
    assert parse_status(data, "host-1") == [app.on_device("host-1") for app in parse_status(data)]
