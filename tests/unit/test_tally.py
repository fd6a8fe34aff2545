"""The streamed check (agent/tally.py, agent/scan.report_files): the same report as reading every
file whole, merging (merge_inventories) and matching, without keeping every app record; and
connector pages handed on as they arrive (agent.inventory._run_pages)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.banlist.parse import parse_banlist
from agent.config import Config, GatewayConfig, GroupRule
from agent.groups import assign_groups
from agent.inventory import _run_pages
from agent.inventory.base import Collected, Context
from agent.inventory.file import inventory_to_dict, load_inventory_file, merge_inventories, stream_inventory_file
from agent.match import Matcher, compile_banlist
from agent.model import App, BanList, BanListInfo, CollectorError, Device, Inventory
from agent.report.render import render_table
from agent.scan import build_report, report_files
from agent.tally import Tally

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
BANLIST = parse_banlist(b"""
format: appban.banlist/v1
serial: 3
issued: 2026-11-01T00:00:00Z
entries:
  - {id: tiktok, name: TikTok, applies_to: [staff], advisory_for: [members], match: {android: [com.zhiliaoapp.musically], ios: [com.zhiliaoapp.musically]}}
  - {id: wechat, name: WeChat, exempt: [members], match: {names: ["wechat*"]}}
  - {id: capcut, name: CapCut, versions: ">= 2", match: {publishers: ["bytedance*"]}}
""", "test list")
INFO = BanListInfo(3, "test list", signed=False)
CONFIG = Config(gateway=GatewayConfig(default_groups=("staff",), groups=(
    GroupRule(groups=("members",), names=("PHONE-1*",)),
    GroupRule(groups=("members",), attributes={"email_domain": ("assnat.qc.ca",)}),
)))
HEADER = ["ApplicationKey", "ApplicationName", "ApplicationPublisher", "ApplicationShortVersion", "ApplicationVersion",
          "DeviceId", "DeviceName", "EmailAddress", "OSDescription", "OSVersion", "Platform", "UserId", "UserName"]
APPS = [
    ("com.zhiliaoapp.musically", "TikTok", "TikTok Pte. Ltd.", "35.1.2", "351"),
    ("com.tencent.mm", "WeChat", "Tencent", "8.0", "80"),
    ("com.lemon.lvoverseas", "CapCut", "Bytedance Pte. Ltd.", "1.9", "19"),
    ("com.lemon.lvoverseas", "CapCut", "Bytedance Pte. Ltd.", "", "2.1"),
    ("com.example.notes", "Notes", "Example", "1.0", "10"),
    ("com.example.notes", " Notes ", "Example", "1.0", "10"),  # the same app once stripped
    ("", "", "Nobody", "1", "1"),  # no app: skipped and counted in one error
]
DEVICES = [("dev-a", "PHONE-100", "a@assnat.qc.ca", "Android"), ("dev-b", "PHONE-200", "b@gouv.qc.ca", "iOS"),
           (" dev-c ", "PHONE-300", "c@gouv.qc.ca", "Android"), ("", "PHONE-400", "d@gouv.qc.ca", "Android")]
USERS = ["Marie Roy", "Marie Roy ", "Jean Smith"]


def _row(app: int, device: int, user: int) -> list[str]:
    key, name, publisher, short, version = APPS[app]
    device_id, hostname, email, platform = DEVICES[device]
    return [key, name, publisher, short, version, device_id, hostname, email, platform, "17", platform, "u-1", USERS[user]]


def _write_csv(path: Path, rows: list[list[str]]) -> str:
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return str(path)


def _without_id(report_dict: dict) -> dict:
    return {key: value for key, value in report_dict.items() if key != "id"}


def _whole(paths: list[str], banlist: BanList = BANLIST) -> dict:
    """What the check did before it streamed: every file read whole, merged, grouped, matched."""
    merged = merge_inventories(load_inventory_file(path) for path in paths)
    report = build_report(banlist, INFO, assign_groups(merged, CONFIG.gateway, local=None), NOW, timedelta(days=90))
    return {"json": _without_id(report.to_dict()), "table": render_table(replace(report, id="x"))}


def _streamed(paths: list[str], banlist: BanList = BANLIST) -> dict:
    report = report_files(CONFIG, banlist, INFO, NOW, paths)
    return {"json": _without_id(report.to_dict()), "table": render_table(replace(report, id="x"))}


rows = st.lists(st.tuples(st.integers(0, len(APPS) - 1), st.integers(0, len(DEVICES) - 1),
                          st.integers(0, len(USERS) - 1)), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(rows, min_size=1, max_size=3), as_json=st.booleans())
def test_streamed_report_is_the_report_of_the_merged_files(tmp_path: Path, files, as_json: bool) -> None:
    """Any rows, in any order, with duplicates, whitespace twins, rows without an app or device,
    over one to three files (the first one possibly saved as appban JSON): the same report."""
    paths = [_write_csv(tmp_path / f"export-{n}.csv", [_row(*r) for r in chosen]) for n, chosen in enumerate(files)]
    if as_json:
        saved = tmp_path / "export-0.json"
        saved.write_text(json.dumps(inventory_to_dict(load_inventory_file(paths[0]))))
        paths[0] = str(saved)
    assert _streamed(paths) == _whole(paths)


def test_an_app_in_two_overlapping_exports_counts_once(tmp_path: Path) -> None:
    first = _write_csv(tmp_path / "1.csv", [_row(0, 0, 0), _row(4, 0, 0)])
    second = _write_csv(tmp_path / "2.csv", [_row(4, 0, 0), _row(5, 0, 1), _row(1, 0, 2)])
    report = report_files(CONFIG, BANLIST, INFO, NOW, [first, second])
    assert report.to_dict()["devices"][0]["apps"] == 3  # TikTok, Notes (twice, and its twin), WeChat of another user
    assert [(f.entry.id, f.status) for f in report.findings] == [("tiktok", "advisory"), ("wechat", "exempt")]


def _tally(path: str) -> Tally:
    tally = Tally(Matcher(compile_banlist(BANLIST), NOW).candidates, unique=True)
    stream_inventory_file(path, tally)
    tally.counted()
    return tally


def test_a_device_ordered_export_keeps_packed_arrays_not_records(tmp_path: Path) -> None:
    rows = [_row(app, device, 0) for device in (0, 1, 2) for app in range(5)]
    tally = _tally(_write_csv(tmp_path / "ordered.csv", rows))
    slots = {slot.id: slot for slot in tally._slots.values()}
    assert [len(tally.matched), sorted(slots)] == [9, ["dev-a", "dev-b", "dev-c"]]
    assert [slot.seen is None for slot in slots.values()] == [True, True, False]  # the last is still being read
    assert [slot.apps() for slot in slots.values()] == [5, 5, 5]


def test_a_device_that_keeps_coming_back_stays_unpacked_and_counts_right(tmp_path: Path) -> None:
    rows = [_row(app, device, 0) for app in range(5) for device in (0, 1)]  # sorted by app, not device
    tally = _tally(_write_csv(tmp_path / "by-app.csv", rows))
    slots = list(tally._slots.values())
    assert [slot.apps() for slot in slots] == [5, 5]
    assert all(slot.seen is not None for slot in slots)


def test_inventory_read_whole_is_taken_record_by_record() -> None:
    phone = Device(id="p1", kind="android", groups=("staff",))
    apps = (App("android", "com.zhiliaoapp.musically", name="TikTok", device="p1"),
            App("android", "com.zhiliaoapp.musically", name="TikTok", device="p1"),
            App("android", "com.example.notes", device="p2"))
    tally = Tally(Matcher(compile_banlist(BANLIST), NOW).candidates, unique=False)
    tally.inventory(Inventory(devices=(phone,), apps=apps))
    assert dict(tally.counted()) == {"p1": 2, "p2": 1}  # a collector's records are all counted, as before
    assert [app.id for app, _ in tally.matched] == ["com.zhiliaoapp.musically"] * 2


class _PagedCollector:
    """A connector-shaped collector: two pages, then a defect (not an API error) on the third."""

    name = "paged"

    def pages(self, ctx):
        yield Collected(apps=[App("android", "com.zhiliaoapp.musically", device="p1")], devices=[Device(id="p1")],
                        notes=["blind spot"])
        yield Collected(apps=[App("android", "com.example", device="p2")], devices=[Device(id="p2")],
                        errors=[CollectorError("paged", "p3 has no app reports", "p3")], notes=["blind spot"])
        raise KeyError("applicationReports")


def test_pages_go_to_the_stream_and_a_defect_part_way_keeps_the_pages_before() -> None:
    streamed: list[App] = []
    kept = _run_pages(_PagedCollector(), Context(), "host", streamed.extend)
    assert [a.id for a in streamed] == ["com.zhiliaoapp.musically", "com.example"]
    assert [d.id for d in kept.devices] == ["p1", "p2"] and kept.apps == [] and kept.notes == ["blind spot"]
    assert [e.message for e in kept.errors] == ["p3 has no app reports", "KeyError: 'applicationReports'"]


SIGNALS = parse_banlist(b"""
format: appban.banlist/v1
serial: 4
issued: 2026-11-01T00:00:00Z
entries:
  - {id: tiktok, name: TikTok, applies_to: [staff], advisory_for: [members], match: {android: [com.zhiliaoapp.musically], deb: [tiktok]}}
  - {id: wechat, name: WeChat, exempt: [members], match: {names: ["wechat*"], executables: [wechat-bin]}}
  - {id: capcut, name: CapCut, versions: ">= 2", match: {publishers: ["*bytedance*"], windows: [CapCut]}}
""", "signals list")
TEXTS = st.sampled_from(["", "TikTok", "WeChat Work", "CapCut", "Notes", "tiktok", "com.zhiliaoapp.musically"])
JSON_APPS = st.fixed_dictionaries(
    {"source": st.sampled_from(["dpkg", "android", "windows", "process", "desktop"]), "id": TEXTS},
    optional={"name": TEXTS, "publisher": st.sampled_from(["", "Bytedance Ltd", "Tencent"]),
              "version": st.sampled_from(["", "1.0", "2.5"]), "device": st.sampled_from(["", "p1", "p2", "p3"]),
              "user": st.sampled_from(["", "alice"]), "path": st.sampled_from(["", "/usr/bin/wechat-bin"]),
              "aliases": st.lists(TEXTS, max_size=2), "sha256": st.just("ab" * 32),
              "extra": st.dictionaries(st.sampled_from(["arch", "former_names", "launcher_programs"]),
                                       st.sampled_from(["amd64", "WeChat", "wechat-bin,x", "TikTok"]), max_size=2)},
)
JSON_DOCUMENTS = st.fixed_dictionaries(
    {"format": st.just("appban.inventory/v1"), "apps": st.lists(JSON_APPS, max_size=25)},
    optional={"devices": st.lists(st.fixed_dictionaries(
        {"id": st.sampled_from(["p1", "p2", "local"])},
        optional={"hostname": st.sampled_from(["PHONE-100", "PHONE-200"]), "groups": st.lists(
            st.sampled_from(["staff", "members"]), max_size=2)}), max_size=3),
        "errors": st.lists(st.fixed_dictionaries({"collector": st.just("c"), "message": st.just("m")}), max_size=1),
        "notes": st.lists(st.just("a note"), max_size=1),
        "collected_at": st.just("2026-12-01T10:00:00+00:00")},
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents=st.lists(JSON_DOCUMENTS, min_size=1, max_size=2), csv_rows=st.none() | rows,
       repeat=st.booleans())
def test_streamed_json_inventories_give_the_report_of_the_merged_files(tmp_path: Path, documents, csv_rows,
                                                                      repeat: bool) -> None:
    """appban JSON documents are streamed as content rows without an App per record: for any
    records (every signal the matcher reads, duplicates within and across files, devices the
    apps name but no file describes), alone or beside an MDM export, the same report as reading
    every file whole, merging and matching."""
    paths = []
    for number, document in enumerate(documents):
        if repeat:
            document = {**document, "apps": document["apps"] * 2}
        path = tmp_path / f"inventory-{number}.json"
        path.write_text(json.dumps(document))
        paths.append(str(path))
    if csv_rows is not None:
        paths.append(_write_csv(tmp_path / "export.csv", [_row(*r) for r in csv_rows]))
    assert _streamed(paths, SIGNALS) == _whole(paths, SIGNALS)


def test_a_streamed_json_inventory_keeps_only_the_named_apps_as_records(tmp_path: Path) -> None:
    document = {"format": "appban.inventory/v1", "apps": [
        {"source": "android", "id": "com.zhiliaoapp.musically", "device": "p1"},
        {"source": "android", "id": "com.zhiliaoapp.musically", "device": "p1"},  # the same record: once
        {"source": "android", "id": "com.zhiliaoapp.musically", "device": "p2", "user": "alice"},
        *({"source": "dpkg", "id": f"pkg{n}", "device": f"p{n % 2 + 1}", "extra": {"arch": "amd64"}} for n in range(50)),
    ]}
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(document))
    tally = Tally(Matcher(compile_banlist(SIGNALS), NOW).candidates, unique=True)
    stream_inventory_file(str(path), tally)
    assert [(app.device, app.user, type(app)) for app, _ in tally.matched] == [("p1", "", App), ("p2", "alice", App)]
    assert dict(tally.counted()) == {"p1": 26, "p2": 26}


def test_content_is_every_app_field_but_where_it_is_in_order() -> None:
    """The matcher, the tally and the typed reader slice records by CONTENT's order."""
    from dataclasses import fields

    from agent.match import CONTENT, app_of, content_of
    from agent.wire import WireApp

    assert CONTENT == tuple(f.name for f in fields(App) if f.name not in ("device", "user"))
    assert WireApp.__struct_fields__ == (*CONTENT, "device", "user")
    app = App("dpkg", "vim", name="Vim", version="9", publisher="p", path="/usr/bin/vim", user="u", device="pc",
              aliases=("vim:amd64",), sha256="ab" * 32, extra=(("arch", "amd64"),))
    assert app_of(content_of(app), "pc", "u") == app
