"""The matcher: identifiers per platform, globs, scope and statuses, exceptions, order-independence."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.banlist.parse import parse_banlist
from agent.match import compile_banlist, match
from agent.model import App, Device

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)

QUEBEC = """
format: appban.banlist/v1
serial: 1
issued: 2023-02-28T00:00:00-05:00
entries:
  - id: tiktok-quebec
    name: TikTok
    reason: Québec ban on government devices; National Assembly members only strongly recommended
    effective: 2023-02-28T00:00:00-05:00
    applies_to: [staff, ministers]
    advisory_for: [deputies]
    match:
      android: [com.zhiliaoapp.musically, com.ss.android.ugc.trill]
      ios: [com.zhiliaoapp.musically]
"""


def findings_for(banlist_text: str, apps, devices, now=NOW):
    banlist = parse_banlist(banlist_text.encode())
    return match(apps, {d.id: d for d in devices}, compile_banlist(banlist), now)


def phone(groups, device_id="phone-1"):
    return Device(id=device_id, kind="android", groups=tuple(groups))


TIKTOK = App(source="android", id="com.zhiliaoapp.musically", name="TikTok", device="phone-1", version="35.1.2")


@pytest.mark.parametrize(
    ("groups", "expected"),
    [(["staff"], ["violation"]), (["ministers"], ["violation"]), (["deputies"], ["advisory"]),
     (["press"], []), ([], []), (["deputies", "ministers"], ["violation"])],
)
def test_quebec_case_staff_ministers_violate_deputies_are_advised_press_untouched(groups, expected):
    found = findings_for(QUEBEC, [TIKTOK], [phone(groups)])
    assert [f.status for f in found] == expected


def test_before_the_effective_date_a_match_is_upcoming():
    early = datetime(2023, 2, 27, 12, 0, tzinfo=timezone.utc)
    found = findings_for(QUEBEC, [TIKTOK], [phone(["staff"])], now=early)
    assert [f.status for f in found] == ["upcoming"]


def test_identifiers_are_matched_per_platform_and_case_insensitively():
    apps = [
        App(source="ios", id="COM.ZHILIAOAPP.MUSICALLY", device="phone-1"),
        # the same string on a platform the entry does not list is not a match
        App(source="macos", id="com.zhiliaoapp.musically", device="phone-1"),
        App(source="dpkg", id="com.ss.android.ugc.trill", device="phone-1"),
    ]
    found = findings_for(QUEBEC, apps, [phone(["staff"])])
    assert [(f.app.source, f.matched_by) for f in found] == [("ios", "ios:com.zhiliaoapp.musically")]


GLOBS = """
format: appban.banlist/v1
serial: 1
issued: 2026-01-01T00:00:00Z
entries:
  - id: bytedance
    name: ByteDance apps
    match:
      publishers: ["bytedance*"]
  - id: wechat
    name: WeChat
    match:
      names: ["WeChat", "微信"]
      windows: [WeChat]
      executables: [wechat]
  - id: capcut
    name: CapCut
    match:
      names: ["*capcut*", "C?pCut Pro"]
  - id: short
    name: Short glob
    match:
      names: ["?q"]
"""


@pytest.mark.parametrize(
    ("app", "entries"),
    [
        (App(source="windows", id="CapCut", name="CapCut", publisher="Bytedance Pte. Ltd."), ["bytedance", "capcut"]),
        (App(source="windows", id="{GUID}", name="WeChat"), ["wechat"]),
        (App(source="windows", id="WeChat", name="Weixin"), ["wechat"]),
        (App(source="desktop", id="x", name="微信"), ["wechat"]),
        (App(source="desktop", id="x", name="WeChat Work"), []),
        (App(source="process", id="wechat", name="wechat"), ["wechat"]),
        (App(source="desktop", id="x", name="Launcher", path="/opt/wechat/WeChat"), ["wechat"]),
        (App(source="desktop", id="x", name="My CAPCUT editor"), ["capcut"]),
        (App(source="desktop", id="x", name="CapCut Pro"), ["capcut"]),
        (App(source="desktop", id="x", name="CopCut Pro"), ["capcut"]),
        (App(source="desktop", id="x", name="QQ"), ["short"]),
        (App(source="desktop", id="x", name="QQQ"), []),
        (App(source="dpkg", id="bytedance-tool", name="bytedance-tool"), []),
    ],
)
def test_names_publishers_and_executables(app, entries):
    app = App(**{**app.__dict__, "device": "pc"})
    found = findings_for(GLOBS, [app], [Device(id="pc")])
    assert sorted(f.entry.id for f in found) == entries


VERSIONED = """
format: appban.banlist/v1
serial: 1
issued: 2026-01-01T00:00:00Z
entries:
  - id: old-tiktok
    name: TikTok before 35
    versions: "<35"
    match: {android: [com.zhiliaoapp.musically]}
"""


@pytest.mark.parametrize(("version", "hit"), [("34.9.1", True), ("35.0", False), ("35.1.2", False), ("", True),
                                              ("9", True), ("34.0~beta", True)])
def test_version_constraints(version, hit):
    app = App(source="android", id="com.zhiliaoapp.musically", device="phone-1", version=version)
    assert bool(findings_for(VERSIONED, [app], [phone([])])) is hit


EXCEPTIONS = """
format: appban.banlist/v1
serial: 1
issued: 2026-01-01T00:00:00Z
entries:
  - id: tiktok
    name: TikTok
    exempt: [security-research]
    match: {android: [com.zhiliaoapp.musically]}
exceptions:
  - entry: tiktok
    devices: [phone-1]
    approved_by: CISO
    reason: social media team
    expires: 2027-01-01T00:00:00Z
  - entry: tiktok
    devices: [phone-2]
    approved_by: CISO
    reason: expired pilot
    expires: 2026-01-01T00:00:00Z
  - entry: tiktok
    users: [alice]
    approved_by: Deputy Minister
    reason: investigations
    expires: 2027-01-01T00:00:00Z
"""


def test_active_exception_exempts_and_says_who_approved_until_when():
    (finding,) = findings_for(EXCEPTIONS, [TIKTOK], [phone([])])
    assert finding.status == "exempt"
    assert finding.exception.approved_by == "CISO"
    assert finding.to_dict()["exception"]["expires"].startswith("2027-01-01")


def test_expired_exception_no_longer_applies():
    app = App(source="android", id="com.zhiliaoapp.musically", device="phone-2")
    (finding,) = findings_for(EXCEPTIONS, [app], [phone([], "phone-2")])
    assert finding.status == "violation"


def test_user_exception_covers_only_that_users_install():
    apps = [App(source="android", id="com.zhiliaoapp.musically", device="phone-3", user=u) for u in ("alice", "bob")]
    found = findings_for(EXCEPTIONS, apps, [phone([], "phone-3")])
    assert {(f.app.user, f.status) for f in found} == {("alice", "exempt"), ("bob", "violation")}


def test_exempt_group_wins_over_everything():
    (finding,) = findings_for(EXCEPTIONS, [TIKTOK], [phone(["security-research"])])
    assert finding.status == "exempt" and finding.exception is None


def test_unknown_device_gets_no_groups_but_is_still_checked():
    found = findings_for(EXCEPTIONS, [App(source="android", id="com.zhiliaoapp.musically", device="ghost")], [])
    assert [f.status for f in found] == ["violation"]


# --- properties -------------------------------------------------------------------------------

identifier = st.sampled_from(["com.a", "com.b", "com.zhiliaoapp.musically", "wechat", "Tool", "x.y"])
apps_strategy = st.lists(
    st.builds(App, source=st.sampled_from(["android", "ios", "dpkg", "process", "desktop", "windows"]),
              id=identifier, name=st.sampled_from(["WeChat", "TikTok", "CapCut Pro", "notes", ""]),
              publisher=st.sampled_from(["", "Bytedance Ltd", "Tencent"]),
              device=st.sampled_from(["pc", "phone-1"]), user=st.sampled_from(["", "alice"]),
              version=st.sampled_from(["", "1.0", "40"])),
    max_size=25,
)


def _entry(i, kinds):
    return {"id": f"e{i}", "name": f"E{i}", "match": kinds}


entries_strategy = st.lists(
    st.dictionaries(st.sampled_from(["android", "ios", "deb", "names", "publishers", "executables", "windows"]),
                    st.lists(st.sampled_from(["com.a", "wechat", "tiktok*", "*cut*", "bytedance*", "tool", "x.y"]),
                             min_size=1, max_size=3), max_size=3),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(apps_strategy, entries_strategy, st.randoms())
def test_findings_do_not_depend_on_entry_or_app_order(apps, kinds, rnd):
    entries = [_entry(i, k) for i, k in enumerate(kinds)]
    base = {"format": "appban.banlist/v1", "serial": 1, "issued": "2026-01-01T00:00:00Z"}
    devices = {"pc": Device(id="pc"), "phone-1": Device(id="phone-1", groups=("staff",))}
    shuffled_entries, shuffled_apps = entries[:], apps[:]
    rnd.shuffle(shuffled_entries)
    rnd.shuffle(shuffled_apps)
    first = compile_banlist(parse_banlist(yaml.safe_dump({**base, "entries": entries}).encode()))
    second = compile_banlist(parse_banlist(yaml.safe_dump({**base, "entries": shuffled_entries}).encode()))
    as_dicts = lambda found: [f.to_dict() for f in found]  # noqa: E731
    assert as_dicts(match(apps, devices, first, NOW)) == as_dicts(match(shuffled_apps, devices, second, NOW))


@settings(max_examples=150, deadline=None)
@given(apps_strategy, entries_strategy)
def test_index_agrees_with_brute_force(apps, kinds):
    """The indexed matcher finds exactly what trying every rule on every app finds."""
    import fnmatch
    import os

    from agent.sources import facts

    entries = [_entry(i, k) for i, k in enumerate(kinds)]
    banlist = parse_banlist(yaml.safe_dump({"format": "appban.banlist/v1", "serial": 1,
                                            "issued": "2026-01-01", "entries": entries}).encode())
    expected = set()
    for app in apps:
        for entry in banlist.entries:
            m = entry.match
            kind = facts(app.source).match_kind or None
            keys = {app.id.lower()} | ({app.name.lower()} if kind == "windows" and app.name else set())
            hit = kind is not None and bool(keys & set(getattr(m, kind)))
            hit |= any(fnmatch.fnmatchcase(app.name.lower(), p) for p in m.names) if app.name else False
            hit |= any(fnmatch.fnmatchcase(app.publisher.lower(), p) for p in m.publishers) if app.publisher else False
            exes = {os.path.basename(app.path).lower()} if app.path else set()
            exes |= {app.id.lower()} if app.source == "process" else set()
            hit |= bool(exes & set(m.executables))
            if hit:
                expected.add((app, entry.id))
    found = match(apps, {}, compile_banlist(banlist), NOW + timedelta(days=1))
    assert {(f.app, f.entry.id) for f in found} == expected


def test_the_memo_tells_apart_records_of_one_id_that_differ_in_folded_launcher_facts():
    banlist = """
format: appban.banlist/v1
serial: 1
issued: 2026-01-01T00:00:00Z
entries:
  - {id: by-exe, name: WeChat, match: {executables: [wechat]}}
"""
    plain = App(source="dpkg", id="wechat", name="WeChat", device="phone-1")
    folded = App(source="dpkg", id="wechat", name="WeChat", device="phone-2",
                 extra=(("launcher_programs", "wechat"),))
    later = App(source="dpkg", id="wechat", name="WeChat", device="phone-3")
    found = findings_for(banlist, [plain, folded, later], [phone([], d) for d in ("phone-1", "phone-2", "phone-3")])
    assert [f.device for f in found] == ["phone-2"]


# Mutants the suite once let through (issue 11, "test strength"): each test below fails when the
# matcher checks `upcoming` before an individual exception, or marks only violations upcoming.


def test_an_individual_exception_wins_over_upcoming() -> None:
    """Before its effective date, an entry with an active exception for this device is exempt
    (with the exception shown), not upcoming: the exception is what the device will be under."""
    upcoming = EXCEPTIONS.replace("    exempt: [security-research]\n",
                                  "    exempt: [security-research]\n    effective: 2027-06-01T00:00:00Z\n")
    (covered,) = findings_for(upcoming, [TIKTOK], [phone([])])
    assert (covered.status, covered.exception.approved_by) == ("exempt", "CISO")
    other = App(source="android", id="com.zhiliaoapp.musically", device="phone-9")
    (uncovered,) = findings_for(upcoming, [other], [phone([], "phone-9")])
    assert (uncovered.status, uncovered.exception) == ("upcoming", None)


def test_advisories_are_upcoming_too_before_the_effective_date() -> None:
    early = datetime(2023, 2, 27, 12, 0, tzinfo=timezone.utc)
    found = findings_for(QUEBEC, [TIKTOK], [phone(["deputies"])], now=early)
    assert [f.status for f in found] == ["upcoming"]
    found = findings_for(QUEBEC, [TIKTOK], [phone(["press"])], now=early)
    assert found == []  # out of scope stays out of scope, effective or not


SIGNALS = """
format: appban.banlist/v1
serial: 1
issued: 2026-01-01T00:00:00Z
entries:
  - {id: by-name, name: TikTok, match: {names: [TikTok]}}
  - {id: by-former, name: Musically, match: {names: [Musical.ly]}}
  - {id: by-second-former, name: Old, match: {names: [Old Name]}}
  - {id: by-suffix, name: Tok, match: {names: ["*Tok"]}}
  - {id: by-path, name: Bin, match: {executables: [tiktok-bin]}}
  - {id: by-launcher, name: Launcher, match: {executables: [tt-launcher]}}
  - {id: by-second-launcher, name: Second, match: {executables: [tt-second]}}
  - {id: by-process-id, name: Proc, match: {executables: [tiktok-proc]}}
"""


def test_every_signal_of_one_app_is_matched_none_replaces_another() -> None:
    """An app folded from a package and its launchers carries its current name, former names,
    its path and its launchers' programs: each must find its own entry (mutants that replaced
    the collected hits instead of adding to them, or split the folded lists wrongly, survived)."""
    app = App(source="dpkg", id="tiktok", name="TikTok", path="/usr/bin/tiktok-bin", device="pc",
              extra=(("former_names", "Musical.ly,Old Name"), ("launcher_programs", "tt-launcher,tt-second")))
    found = findings_for(SIGNALS, [app], [Device(id="pc")])
    assert sorted(f.entry.id for f in found) == sorted(
        ["by-name", "by-former", "by-second-former", "by-suffix", "by-path", "by-launcher", "by-second-launcher"])


def test_a_process_is_matched_by_its_id_and_its_path() -> None:
    proc = App(source="process", id="tiktok-proc", name="tiktok-proc", path="/opt/tt/tiktok-bin", device="pc")
    found = findings_for(SIGNALS, [proc], [Device(id="pc")])
    assert sorted(f.entry.id for f in found) == ["by-path", "by-process-id"]


def test_a_glob_literal_at_the_very_end_of_the_name_is_found() -> None:
    """The trigram index must look at the last three characters too."""
    for name in ("TikTok", "Tok", "xTok"):
        found = findings_for(SIGNALS, [App(source="desktop", id="x", name=name, device="pc")], [Device(id="pc")])
        assert "by-suffix" in {f.entry.id for f in found}, name


def test_a_fact_given_twice_is_read_as_extra_value_reads_it() -> None:
    """The matcher reads folded-launcher facts off the content's pairs: the first of a key wins,
    as App.extra_value has it (a collector may build pairs with a key twice)."""
    app = App(source="dpkg", id="x", device="pc", path="/usr/bin/x",
              extra=(("launcher_programs", "tt-launcher"), ("launcher_programs", "tt-second")))
    assert app.extra_value("launcher_programs") == "tt-launcher"
    found = findings_for(SIGNALS, [app], [Device(id="pc")])
    assert [f.entry.id for f in found] == ["by-launcher"]
