"""The fleet's storage on SQLite and on a real PostgreSQL cluster: the migration creates exactly
the tables the code declares, ingest diffs (an unchanged report writes almost nothing), replays
are recognised, removals resolve with their time, policy changes re-check, pull work is shared
with SKIP LOCKED, retention prunes."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, func, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from agent.banlist.parse import parse_banlist
from agent.config import GroupRule
from agent.fleet import enrollment, query
from agent.fleet import tables as t
from agent.fleet.config import FleetConfig, PullConfig, PullTarget
from agent.fleet.ingest import RefusedReport
from agent.fleet.pull import Puller
from agent.fleet.enrollment import device_for_token
from agent.fleet.store import CHECKPOINT_EVERY, PushJob, Store, TokenRevoked, scoped_key, token_hash
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
    assert differences == [] and version == "0002"
    store.migrate()  # a second start-up migrates nothing and fails nothing


def test_enrollment_keeps_only_a_hash(store: Store) -> None:
    token = enrollment.enroll(store, "host-1", NOW, "test").token
    assert device_for_token(store, token) == "host-1" and device_for_token(store, token + "x") is None
    with store.read() as connection:
        rows = [tuple(r) for r in connection.execute(select(t.enrollments))]
    assert rows == [("host-1", token_hash(token), NOW, None)] and token not in repr(rows)
    again = enrollment.enroll(store, "host-1", NOW, "test", current_token=token)  # a rotation
    assert device_for_token(store, token) is None and device_for_token(store, again.token) == "host-1"


def test_a_known_device_id_enrolls_again_only_with_proof_or_leave(store: Store) -> None:
    first = enrollment.enroll(store, "host-1", NOW, "client 10.0.0.1").token
    with pytest.raises(enrollment.EnrollRefused) as taken:
        enrollment.enroll(store, "host-1", NOW, "client 10.6.6.6")  # the secret alone: a takeover
    assert taken.value.status == 409 and "appban fleet reenroll host-1" in str(taken.value)
    with pytest.raises(enrollment.EnrollRefused) as wrong:
        enrollment.enroll(store, "host-1", NOW, "client 10.6.6.6", current_token="guessed")
    assert wrong.value.status == 401
    ingest(store, inventory("imported-1", "bash"), "r1")  # known from another source, never enrolled
    with pytest.raises(enrollment.EnrollRefused):
        enrollment.enroll(store, "imported-1", NOW, "client 10.6.6.6")
    assert device_for_token(store, first) == "host-1"  # the refusals changed nothing

    enrollment.allow_reenroll(store, "host-1", NOW, "cli", within=60)
    assert device_for_token(store, first) == "host-1"  # the leave alone takes nothing away
    again = enrollment.enroll(store, "host-1", NOW + 1, "client 10.0.0.2")
    assert again.event == "reenrolled" and device_for_token(store, first) is None
    with pytest.raises(enrollment.EnrollRefused):  # the leave was used up
        enrollment.enroll(store, "host-1", NOW + 2, "client 10.6.6.6")
    enrollment.allow_reenroll(store, "host-1", NOW, "cli", within=60)
    with pytest.raises(enrollment.EnrollRefused):  # ... and one that ran out is no leave
        enrollment.enroll(store, "host-1", NOW + 61, "client 10.6.6.6")

    enrollment.revoke(store, "host-1", NOW + 70, "cli")
    assert device_for_token(store, again.token) is None
    with pytest.raises(enrollment.EnrollRefused):
        enrollment.enroll(store, "host-1", NOW + 71, "client 10.0.0.2", current_token=again.token)
    with pytest.raises(enrollment.EnrollRefused) as unknown:
        enrollment.revoke(store, "nobody", NOW, "cli")
    assert unknown.value.status == 404
    with store.read() as connection:
        history = enrollment.events(connection, "host-1")
    assert [event for event, _, _ in history] == [
        "enrolled", "reenroll_allowed", "reenrolled", "reenroll_allowed", "revoked"]


def test_a_dead_token_stores_nothing_on_either_path(store: Store) -> None:
    token = token_hash(enrollment.enroll(store, "host-1", NOW, "test").token)
    inv = inventory("host-1", "tiktok-desktop")
    verdicts = judge(policy(), inv, {}, datetime.fromtimestamp(NOW, timezone.utc))
    state = verdicts[0].state_hash

    def push(report: str, apps_changed: bool = False):
        return store.push("host-1", "other" if apps_changed else state, scoped_key("host-1", report), NOW, report,
                          lambda: verdicts, b"{}", token)

    assert push("r1", apps_changed=True).response["changed"] == 1
    assert push("r2").response["changed"] == 0  # the fast path, token checked in its statement
    enrollment.revoke(store, "host-1", NOW, "cli")
    for report, changed in (("r3", False), ("r4", True)):  # refused on the fast path and the full one
        with pytest.raises(TokenRevoked):
            push(report, apps_changed=changed)
    assert count(store, t.idempotency_keys) == 1  # r1's: the sighting r2 is keyed by the device's last report id


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
    assert tuple(device) == (3, "r3", "hash-2") and keys == 2 and reports == ["r1", "r3"] and open_findings == 0


def test_an_unchanged_push_keeps_no_key_and_its_retry_is_a_replay_counted_once(store: Store) -> None:
    push(store, inventory("host-1", "tiktok-desktop"), "r1", "hash-1")

    def never() -> list:
        raise AssertionError("a retried sighting must not be judged")

    sighting = push(store, inventory("host-1"), "r2", "hash-1", now=NOW + 60, judged=never)
    keys = count(store, t.idempotency_keys)
    again = push(store, inventory("host-1"), "r2", "hash-1", now=NOW + 70, judged=never)  # its answer was lost
    assert again.replayed and again.response == sighting.response
    with store.write() as connection:  # a central re-check under a new policy changed the stored hash
        connection.execute(update(t.devices).values(state_hash="hash-rechecked"))
    late = push(store, inventory("host-1"), "r2", "hash-1", now=NOW + 80, judged=never)
    assert late.replayed and late.response == sighting.response
    with store.read() as connection:
        device = connection.execute(select(t.devices.c.reports, t.devices.c.last_report_id, t.devices.c.last_seen)).one()
    assert tuple(device) == (2, "r2", NOW + 60) and count(store, t.idempotency_keys) == keys == 1


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


def _puller(store: Store, urls: list[str], source: str = "", token_file: str = "") -> Puller:
    config = FleetConfig(pull=PullConfig(targets=tuple(PullTarget(u, token_file) for u in urls), concurrency=2))
    return Puller(SimpleNamespace(config=config, store=store), source)


def _targets(store: Store) -> dict[str, str]:
    with store.read() as connection:
        return dict(connection.execute(select(t.pull_targets.c.url, t.pull_targets.c.token_file)).all())


def test_servers_with_different_targets_share_the_union(store: Store) -> None:
    a, b, c = (f"http://127.0.0.1:1/{n}" for n in "abc")
    one, two = _puller(store, [a, b], "one", "/t/one"), _puller(store, [b, c], "two", "/t/two")
    one.sync(NOW)
    two.sync(NOW)
    assert _targets(store) == {a: "/t/one", b: "/t/one", c: "/t/two"}  # the first lister's token file stays
    with store.write() as connection:  # polled state is kept across the reconciliations below
        connection.execute(t.pull_targets.update().where(t.pull_targets.c.url == b).values(device_id="host-b"))
    one.fleet.config = FleetConfig(pull=PullConfig(targets=(PullTarget(b, "/t/one"),)))
    one.sync(NOW + 1)  # `one` dropped a: nobody lists it any more
    assert set(_targets(store)) == {b, c}
    one.fleet.config = FleetConfig(pull=PullConfig())
    one.sync(NOW + 2)  # ... and b, which `two` still lists
    assert _targets(store) == {b: "/t/one", c: "/t/two"}
    two.sync(NOW + 3)  # unchanged config: not even a write until SYNC_EVERY has passed
    two.sync(NOW + 61)  # the refresh, now the only lister of b: its token file wins
    assert _targets(store) == {b: "/t/two", c: "/t/two"}
    with store.read() as connection:
        assert connection.scalar(select(t.pull_targets.c.device_id).where(t.pull_targets.c.url == b)) == "host-b"
    three = _puller(store, [a], "three")
    three.sync(NOW + 61 + 86401)  # `two` stopped refreshing a day ago: its listings lapsed
    assert set(_targets(store)) == {a}
    idle = _puller(store, [], "idle")  # a server without targets of its own polls the shared ones
    assert [r.url for r in idle.claim(NOW + 90000)] == [a]


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


def job(device: str, report: str, state: str, token: str, judged=None, now: float = NOW) -> PushJob:
    """A push as the ingest route hands it to the group commit (`state` stands for its input hash)."""
    inv = inventory(device, "tiktok-desktop")
    claim = Claim(report, "0.1.0", 7, "", ("staff",))
    judge_it = judged or (lambda: judge(policy(), inv, {device: claim}, datetime.fromtimestamp(now, timezone.utc),
                                        {device: state}))
    return PushJob(device, state, scoped_key(device, report), now, report, judge_it,
                   json.dumps({"id": report}).encode(), token)


def commits(store: Store) -> list[int]:
    """Count the store's committed transactions from now on (a real engine event, not a stand-in)."""
    counted: list[int] = []
    event.listen(store.engine, "commit", lambda connection: counted.append(1))
    return counted


def test_a_group_is_one_transaction_and_a_hostile_push_is_refused_alone(store: Store) -> None:
    tokens = {d: token_hash(enrollment.enroll(store, d, NOW, "test").token) for d in ("a", "b", "c", "d", "e", "f")}
    for device in tokens:
        assert store.push_batch([job(device, f"{device}-1", "hash-1", tokens[device])])[0].response["changed"] == 1
    enrollment.revoke(store, "d", NOW, "cli")
    before = {table.name: count(store, table) for table in (t.reports, t.idempotency_keys, t.findings)}

    def hostile() -> list:
        raise RefusedReport(422, "report c-2: inventory: bad app record")

    group = [job("a", "a-2", "hash-1", tokens["a"], now=NOW + 60),  # unchanged: the batched sighting
             job("b", "b-2", "hash-2", tokens["b"], now=NOW + 60),  # changed: its own SAVEPOINT
             job("c", "c-2", "hash-2", tokens["c"], judged=hostile, now=NOW + 60),
             job("d", "d-2", "hash-1", tokens["d"], now=NOW + 60),  # revoked meanwhile
             job("d", "d-1", "hash-1", tokens["d"], now=NOW + 60),  # ... and its retry is no replay
             job("b", "b-2", "hash-2", tokens["b"], now=NOW + 60),  # b's retry, before its answer came
             job("e", "e-1", "hash-1", tokens["e"], now=NOW + 60),  # a retry of a push stored long ago
             job("e", "e-3", "hash-3", tokens["e"], now=NOW + 60),
             job("f", "f-1", "hash-1", tokens["f"], now=NOW + 60)]  # an unchanged retry among the unchanged
    counted = commits(store)
    results = store.push_batch(group)
    assert counted == [1]  # nine pushes, one transaction
    a, b, c, d, d_old, b_again, e_old, e, f_old = results
    assert a.response == {"report": "a-2", "devices": 1, "changed": 0} and not a.replayed
    assert b.response == {"report": "b-2", "devices": 1, "changed": 1} and not b.replayed
    assert isinstance(c, RefusedReport) and c.status == 422 and "bad app record" in str(c)
    assert isinstance(d, TokenRevoked) and isinstance(d_old, TokenRevoked)
    assert b_again.replayed and b_again.response == b.response
    assert e_old.replayed and e_old.response == {"report": "e-1", "devices": 1, "changed": 1}
    assert e.response["changed"] == 1 and not e.replayed
    assert f_old.replayed and f_old.response == {"report": "f-1", "devices": 1, "changed": 1}
    with store.read() as connection:
        seen = {r.id: (r.reports, r.last_report_id, r.last_seen) for r in connection.execute(select(t.devices))}
        keys = set(connection.scalars(select(t.idempotency_keys.c.key)))
    assert seen == {"a": (2, "a-2", NOW + 60), "b": (2, "b-2", NOW + 60), "c": (1, "c-1", NOW),
                    "d": (1, "d-1", NOW), "e": (2, "e-3", NOW + 60), "f": (1, "f-1", NOW)}
    assert scoped_key("c", "c-2") not in keys and scoped_key("d", "d-2") not in keys
    assert count(store, t.idempotency_keys) == before["idempotency_keys"] + 2  # b-2, e-3 (a-2 is a sighting)
    assert count(store, t.reports) == before["reports"] + 2  # b-2 and e-3 changed something


def test_a_group_whose_transaction_fails_answers_none_as_stored(store: Store) -> None:
    tokens = {d: token_hash(enrollment.enroll(store, d, NOW, "test").token) for d in ("a", "b")}
    for device in tokens:
        store.push_batch([job(device, f"{device}-1", "hash-1", tokens[device])])
    before = {table.name: count(store, table) for table in (t.reports, t.idempotency_keys, t.devices)}
    writer: list = []
    event.listen(store.engine, "begin", writer.append)

    def connection_lost() -> list:  # the database goes away in the middle of the group
        writer[-1].connection.dbapi_connection.close()
        raise RefusedReport(422, "never reached")

    results = store.push_batch([job("a", "a-2", "hash-1", tokens["a"], now=NOW + 60),  # stored before the loss
                                job("b", "b-2", "hash-2", tokens["b"], judged=connection_lost, now=NOW + 60)])
    assert all(isinstance(result, SQLAlchemyError) for result in results)  # a's sighting is not answered as stored
    assert {table.name: count(store, table) for table in (t.reports, t.idempotency_keys, t.devices)} == before
    with store.read() as connection:
        assert connection.scalar(select(t.devices.c.reports).where(t.devices.c.id == "a")) == 1
    assert store.push_batch([job("a", "a-2", "hash-1", tokens["a"], now=NOW + 70)])[0].response["changed"] == 0


def test_the_same_device_twice_in_a_group_is_stored_in_arrival_order(store: Store) -> None:
    token = token_hash(enrollment.enroll(store, "a", NOW, "test").token)
    store.push_batch([job("a", "a-1", "hash-1", token)])
    later = store.push_batch([job("a", "a-2", "hash-2", token, now=NOW + 60), job("a", "a-3", "hash-1", token, now=NOW + 61)])
    assert [r.response["changed"] for r in later] == [1, 1]  # the second is judged against the first, not the old row
    with store.read() as connection:
        row = connection.execute(select(t.devices.c.reports, t.devices.c.last_report_id, t.devices.c.state_hash)).one()
    assert tuple(row) == (3, "a-3", "hash-1")


def test_a_sighting_is_stored_at_once_on_sqlite_and_anything_else_is_left_to_the_group_commit(
        store: Store, tmp_path) -> None:
    tokens = {d: token_hash(enrollment.enroll(store, d, NOW, "test").token) for d in ("a", "b")}
    for device in tokens:
        store.push_batch([job(device, f"{device}-1", "hash-1", tokens[device])])
    enrollment.revoke(store, "b", NOW, "cli")

    def stored() -> dict:
        with store.read() as connection:
            return {r.id: (r.reports, r.last_report_id, r.last_seen) for r in connection.execute(select(t.devices))}

    before = stored()
    sighting = store.sight_at_once(job("a", "a-2", "hash-1", tokens["a"], now=NOW + 60))
    if not store.sqlite:  # a round trip to PostgreSQL is never made on the event loop
        assert sighting is None and stored() == before
        return
    assert sighting is not None and sighting.response == {"report": "a-2", "devices": 1, "changed": 0}
    assert stored()["a"] == (2, "a-2", NOW + 60)  # committed before it is answered
    for other in (job("a", "a-2", "hash-1", tokens["a"], now=NOW + 70),  # its retry: a replay, the group commit's
                  job("a", "a-3", "hash-2", tokens["a"], now=NOW + 70),  # changed
                  job("b", "b-2", "hash-1", tokens["b"], now=NOW + 70)):  # a dead token
        assert store.sight_at_once(other) is None
    assert stored() == {**before, "a": (2, "a-2", NOW + 60)}

    # Another process holds SQLite's write lock: handed over at once, not waited for, and the
    # connection is still good once the lock is gone.
    database = sqlite3.connect(store.engine.url.database, isolation_level=None)
    database.execute("BEGIN IMMEDIATE")
    try:
        assert store.sight_at_once(job("a", "a-4", "hash-1", tokens["a"], now=NOW + 80)) is None
    finally:
        database.execute("ROLLBACK")
        database.close()
    assert store.sight_at_once(job("a", "a-4", "hash-1", tokens["a"], now=NOW + 80)) is not None
    assert stored()["a"] == (3, "a-4", NOW + 80)
    # One in CHECKPOINT_EVERY is left to the writer thread, whose commits checkpoint the WAL.
    answers = [store.sight_at_once(job("a", f"a-{n}", "hash-1", tokens["a"], now=NOW + n))
               for n in range(100, 100 + CHECKPOINT_EVERY)]
    assert sum(answer is None for answer in answers) == 1
