"""The fleet's storage on SQLite and on a real PostgreSQL cluster: the migration creates exactly
the tables the code declares, ingest diffs (an unchanged report writes almost nothing), replays
are recognised, removals resolve with their time, policy changes re-check, pull work is shared
with SKIP LOCKED, retention prunes."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text

from agent.banlist.parse import parse_banlist
from agent.config import GroupRule
from agent.fleet import query
from agent.fleet import tables as t
from agent.fleet.config import FleetConfig, PullConfig, PullTarget
from agent.fleet.ingest import RefusedReport
from agent.fleet.pull import Puller
from agent.fleet.store import Store, scoped_key, token_hash
from agent.fleet.verdict import Claim, make_policy, judge
from agent.model import App, BanListInfo, Device, Inventory
from tests.service_support import BANLIST

NOW = 1_800_000_000.0


def policy(serial: int = 7):
    banlist = parse_banlist(BANLIST.replace("serial: 7", f"serial: {serial}").encode(), "test list")
    return make_policy(banlist, BanListInfo(serial, "test", False), [GroupRule(groups=("ministers",), names=("min-*",))], ())


def inventory(device: str, *packages: str) -> Inventory:
    return Inventory(devices=(Device(device, hostname=device, groups=("staff",)),),
                     apps=tuple(App("dpkg", p, name=p, version="1.0", device=device) for p in packages))


def ingest(store: Store, inv: Inventory, report: str, now: float = NOW, serial: int = 7, pol=None):
    device = inv.devices[0].id
    claim = Claim(report, "0.1.0", serial, "", inv.devices[0].groups)
    verdicts = judge(pol or policy(), inv, {device: claim}, datetime.fromtimestamp(now, timezone.utc))
    return store.ingest(verdicts, "push", now, report, scoped_key(device, report), json.dumps({"id": report}))


def count(store: Store, table) -> int:
    with store.read() as connection:
        return connection.scalar(select(func.count()).select_from(table))


@pytest.fixture
def store(database_url: str):
    opened = Store(database_url)
    yield opened
    opened.close()


def test_migration_matches_the_declared_tables(store: Store) -> None:
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), t.metadata)
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert differences == [] and version == "0001"
    store.migrate()  # a second start-up migrates nothing and fails nothing


def test_enrollment_keeps_only_a_hash(store: Store) -> None:
    token = store.enroll("host-1", NOW)
    assert store.device_for_token(token) == "host-1" and store.device_for_token(token + "x") is None
    with store.read() as connection:
        rows = [tuple(r) for r in connection.execute(select(t.enrollments))]
    assert rows == [("host-1", token_hash(token), NOW)] and token not in repr(rows)
    again = store.enroll("host-1", NOW)
    assert store.device_for_token(token) is None and store.device_for_token(again) == "host-1"


def test_unchanged_report_only_moves_last_seen(store: Store) -> None:
    first = ingest(store, inventory("host-1", "tiktok-desktop", "bash"), "r1")
    assert first.response["changed"] == 1
    written = (t.reports, t.finding_events, t.findings, t.inventories)
    before = {table.name: count(store, table) for table in written}
    second = ingest(store, inventory("host-1", "tiktok-desktop", "bash"), "r2", now=NOW + 60)
    assert second.response["changed"] == 0
    assert {table.name: count(store, table) for table in written} == before
    with store.read() as connection:
        row = connection.execute(select(t.devices.c.last_seen, t.devices.c.reports, t.devices.c.last_report_id)).one()
    assert tuple(row) == (NOW + 60, 2, "r2")


def test_a_replayed_key_returns_the_first_answer_and_counts_once(store: Store) -> None:
    first = ingest(store, inventory("host-1", "tiktok-desktop"), "r1")
    again = ingest(store, inventory("host-1", "tiktok-desktop"), "r1", now=NOW + 5)
    assert again.replayed and again.response == first.response
    with store.read() as connection:
        assert connection.scalar(select(t.devices.c.reports)) == 1


def push(store: Store, inv: Inventory, report: str, state: str, now: float = NOW, judged=None):
    """Store.push as the ingest route calls it, with `state` standing for the report's input hash."""
    device = inv.devices[0].id
    claim = Claim(report, "0.1.0", 7, "", inv.devices[0].groups)
    judge_it = judged or (lambda: judge(policy(), inv, {device: claim}, datetime.fromtimestamp(now, timezone.utc),
                                        {device: state}))
    return store.push(device, state, scoped_key(device, report), now, report, judge_it, json.dumps({"id": report}).encode())


def test_a_push_with_the_stored_input_hash_is_a_sighting_without_judging(store: Store) -> None:
    first = push(store, inventory("host-1", "tiktok-desktop"), "r1", "hash-1")
    assert first.response == {"report": "r1", "devices": 1, "changed": 1}

    def never() -> list:
        raise AssertionError("an unchanged report must not be parsed or matched")

    second = push(store, inventory("host-1", "tiktok-desktop"), "r2", "hash-1", now=NOW + 60, judged=never)
    assert second.response == {"report": "r2", "devices": 1, "changed": 0} and not second.replayed
    assert push(store, inventory("host-1"), "r2", "hash-1", now=NOW + 70, judged=never).replayed  # the retry
    changed = push(store, inventory("host-1"), "r3", "hash-2", now=NOW + 80)
    assert changed.response["changed"] == 1
    with store.read() as connection:
        device = connection.execute(select(t.devices.c.reports, t.devices.c.last_report_id, t.devices.c.state_hash)).one()
        keys = connection.scalar(select(func.count()).select_from(t.idempotency_keys))
        reports = list(connection.scalars(select(t.reports.c.id).order_by(t.reports.c.id)))
        open_findings = connection.scalar(select(func.count()).select_from(t.findings).where(t.findings.c.resolved_at.is_(None)))
    assert tuple(device) == (3, "r3", "hash-2") and keys == 3 and reports == ["r1", "r3"] and open_findings == 0


def test_a_push_refused_while_judging_keeps_nothing(store: Store) -> None:
    push(store, inventory("host-1", "bash"), "r1", "hash-1")
    before = {table.name: count(store, table) for table in (t.reports, t.idempotency_keys, t.inventories)}

    def refused() -> list:
        raise RefusedReport(422, "bad app")

    with pytest.raises(RefusedReport):
        push(store, inventory("host-1"), "r2", "hash-2", now=NOW + 60, judged=refused)
    assert {table.name: count(store, table) for table in (t.reports, t.idempotency_keys, t.inventories)} == before
    with store.read() as connection:
        assert tuple(connection.execute(select(t.devices.c.reports, t.devices.c.last_seen)).one()) == (1, NOW)


def test_removed_app_is_resolved_with_its_time(store: Store) -> None:
    ingest(store, inventory("min-1", "tiktok-desktop", "wechat"), "r1")
    ingest(store, inventory("min-1", "wechat"), "r2", now=NOW + 100)
    with store.read() as connection:
        resolved = query.findings(connection, NOW + 200, query.Selection(status="resolved"))["findings"]
        current = query.findings(connection, NOW + 200, query.Selection())["findings"]
        events = query.history(connection, query.Selection(device="min-1"))["events"]
    assert [(f["entry"], f["resolved_at"]) for f in resolved] == [("tiktok", query.iso(NOW + 100))]
    assert {f["entry"] for f in current} == {"wechat", "drift:groups"}
    assert events[0]["event"] == "resolved" and events[0]["entry"] == "tiktok" and events[0]["app"] == "tiktok-desktop"
    assert events[0]["report"] == "r2"


def test_central_groups_and_status_counts(store: Store) -> None:
    ingest(store, inventory("min-1", "wechat"), "a")       # ministers by rule: wechat is a violation
    ingest(store, inventory("host-2", "wechat"), "b")      # staff: wechat is advisory
    ingest(store, inventory("host-3", "bash"), "c", serial=6)
    with store.read() as connection:
        status = query.status(connection, NOW + 10, 86400, ["tiktok", "wechat"])
        ministers = query.devices(connection, NOW + 10, 86400, query.Selection(group="ministers"))
    assert status["devices"] == {"total": 3, "reporting": 3, "stale": 0, "noncompliant": 1, "drift": 2}
    assert status["entries"] == [
        {"entry": "tiktok", "violation": 0, "advisory": 0, "upcoming": 0, "exempt": 0},
        {"entry": "wechat", "violation": 1, "advisory": 1, "upcoming": 0, "exempt": 0}]
    assert status["banlist_serials"] == {"6": 1, "7": 2}
    assert [d["id"] for d in ministers["devices"]] == ["min-1"]


def test_stale_devices_are_kept(store: Store) -> None:
    ingest(store, inventory("host-1", "bash"), "r1", now=NOW - 3 * 86400)
    store.prune(86400, NOW)
    with store.read() as connection:
        listed = query.devices(connection, NOW, 86400, query.Selection(stale=True))
    assert [(d["id"], d["stale"]) for d in listed["devices"]] == [("host-1", True)]


def test_policy_change_rechecks_stored_inventories(store: Store) -> None:
    ingest(store, inventory("host-1", "tiktok-desktop"), "r1")
    newer = policy(serial=8)
    assert store.recheck(newer, NOW + 10) == 1
    assert store.recheck(newer, NOW + 20) == 0  # the same policy again changes nothing
    with store.read() as connection:
        drift = query.findings(connection, NOW + 30, query.Selection(status="drift"))["findings"]
    assert [f["entry"] for f in drift] == ["drift:serial"]
    assert drift[0]["app"]["name"] == "reported 7, fleet expects 8"


def test_a_recheck_is_not_a_sighting(store: Store) -> None:
    ingest(store, inventory("host-1", "tiktok-desktop"), "r1", now=NOW - 3 * 86400)
    store.recheck(policy(serial=8), NOW)        # changes the verdict (drift)
    store.recheck(policy(serial=7), NOW + 1)    # and back
    with store.read() as connection:
        device, = query.devices(connection, NOW + 2, 86400, query.Selection())["devices"]
        found = query.findings(connection, NOW + 2, query.Selection(entry="tiktok"))["findings"]
    assert (device["stale"], device["last_seen"], device["reports"]) == (True, query.iso(NOW - 3 * 86400), 1)
    assert found[0]["last_seen"] == query.iso(NOW - 3 * 86400)


def test_retention_prunes_old_rows(store: Store) -> None:
    ingest(store, inventory("host-1", "tiktok-desktop"), "r1", now=NOW - 10 * 86400)
    ingest(store, inventory("host-1", "bash"), "r2", now=NOW - 9 * 86400)
    ingest(store, inventory("host-1", "bash", "zsh"), "r3", now=NOW)
    assert store.prune(5 * 86400, NOW) > 0
    assert count(store, t.reports) == 1 and count(store, t.idempotency_keys) == 1
    assert count(store, t.devices) == 1


def _puller(store: Store, urls: list[str]) -> Puller:
    config = FleetConfig(pull=PullConfig(targets=tuple(PullTarget(u) for u in urls), concurrency=2))
    return Puller(SimpleNamespace(config=config, store=store))


def test_pull_targets_are_claimed_once_across_servers(store: Store) -> None:
    urls = [f"http://127.0.0.1:1/{n}" for n in range(10)]
    one, two = _puller(store, urls), _puller(store, urls)
    one.sync(NOW)
    two.sync(NOW)
    with store.engine.connect() as blocker:  # a third server holding row locks mid-claim
        blocker.begin()
        if not store.sqlite:
            blocker.execute(text("SELECT url FROM pull_targets WHERE url = :u FOR UPDATE"), {"u": urls[0]})
        first, second = one.claim(NOW), two.claim(NOW)
        blocker.rollback()
    claimed = [r.url for r in first] + [r.url for r in second]
    assert len(claimed) == len(set(claimed)) == 8  # 2 x concurrency each, never the same target twice
    if not store.sqlite:
        assert urls[0] not in claimed  # the locked row was skipped, not waited for
    assert {r.url for r in one.claim(NOW + 1)} == set(urls) - set(claimed)  # leased ones stay taken
    # A server that dies holding leases hands its share over when they run out (3 x pull.timeout).
    assert set(claimed) <= {r.url for r in two.claim(NOW + 31)} | {r.url for r in one.claim(NOW + 31)}


class Connector:
    """What an MDM API connector will look like to the fleet: a name and inventories."""

    name = "mdm-test"

    def inventories(self):
        yield Inventory(devices=(Device("phone-1", kind="android", attributes=(("department", "x"),)),),
                        apps=(App("android", "com.example", device="phone-1"),
                              App("dpkg", "wechat", device="phone-1")))


def test_an_inventory_source_plugs_into_ingest(store: Store) -> None:
    assert store.ingest_source(Connector(), policy(), NOW) == 1
    with store.read() as connection:
        listed = query.devices(connection, NOW, 86400, query.Selection())["devices"]
    assert [(d["id"], d["source"], d["kind"], d["compliant"]) for d in listed] == [("phone-1", "mdm-test", "android", True)]


def test_targets_file_in_file_sd_style(tmp_path) -> None:
    from agent.fleet.pull import target_files

    path = tmp_path / "targets.yaml"
    path.write_text("- targets: [https://a:9464, https://b:9464]\n  labels: {token_file: /t}\n- targets: [https://c]\n")
    assert target_files(str(path)) == [PullTarget("https://a:9464", "/t"), PullTarget("https://b:9464", "/t"),
                                       PullTarget("https://c", "")]
    path.write_text("targets: nope\n")
    with pytest.raises(ValueError, match="expected a list"):
        target_files(str(path))


def test_a_server_with_an_older_list_does_not_rejudge_the_fleet(store: Store) -> None:
    from agent.fleet.server import apply_policy

    ingest(store, inventory("host-1", "tiktok-desktop"), "r1")
    assert apply_policy(store, policy(serial=8)) and not apply_policy(store, policy(serial=8))
    assert not apply_policy(store, policy(serial=7))  # a server whose refresh failed keeps quiet
    assert apply_policy(store, policy(serial=9))
    with store.read() as connection:
        drift = query.findings(connection, NOW, query.Selection(status="drift"))["findings"]
    assert drift[0]["app"]["name"] == "reported 7, fleet expects 9"


def test_filters_and_paging(store: Store) -> None:
    for n in range(5):
        ingest(store, inventory(f"host-{n}", "tiktok-desktop"), f"r{n}", now=NOW + n)
    phone = Inventory(devices=(Device("min-phone", kind="android"),), apps=(App("dpkg", "wechat", device="min-phone"),))
    store.ingest(judge(policy(), phone, {}, datetime.fromtimestamp(NOW, timezone.utc)), "import", NOW)
    with store.read() as connection:
        page = query.devices(connection, NOW, 86400, query.Selection(limit=2, offset=2))
        android = query.devices(connection, NOW, 86400, query.Selection(kind="android"))
        recent = query.findings(connection, NOW, query.Selection(entry="tiktok", since=NOW + 3))
        ministers = query.findings(connection, NOW, query.Selection(group="ministers"))
        late = query.history(connection, query.Selection(entry="tiktok", since=NOW + 4))
    assert page["total"] == 6 and [d["id"] for d in page["devices"]] == ["host-2", "host-3"]
    assert [d["id"] for d in android["devices"]] == ["min-phone"]
    assert sorted(f["device"] for f in recent["findings"]) == ["host-3", "host-4"]
    assert [(f["device"], f["entry"], f["status"]) for f in ministers["findings"]] == [("min-phone", "wechat", "violation")]
    assert [e["device"] for e in late["events"]] == ["host-4"]
