"""The differential push with real parts: `appban run` agents pushing to a real `appban fleet
serve`. An agent whose inventory is unchanged sends the digest the fleet answered in place of
the inventory; a fleet that no longer holds that inventory (its database restored from a backup)
refuses the digest with 409 and gets the same report, same key, with its inventory at once.
An agent of before the differential push (whole inventories only) keeps working."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.fleet_support import FleetServer, fleet_agent, push, report, write_fleet_config
from tests.fleet_support import enroll as enroll_device
from tests.service_support import DPKG_STATUS, wait_until

pytestmark = pytest.mark.slow

FAST = {"scan": "1s", "push": "1s", "splay": "1s"}


def _accepted(fleet: FleetServer, inventory: str | None) -> list[dict]:
    return [e for e in fleet.events("ingest.accepted") if e.get("inventory") == inventory]


def test_unchanged_reports_go_as_a_digest_and_a_restored_fleet_gets_the_inventory(tmp_path: Path) -> None:
    config = write_fleet_config(tmp_path / "fleet")
    database = tmp_path / "fleet" / "fleet-state" / "fleet.sqlite"
    fleet = FleetServer(config)
    agent = fleet_agent(tmp_path / "agent", fleet, "host-d", ["staff"], tmp_path / "fleet" / "enroll-secret",
                        schedule=FAST)
    backup = tmp_path / "backup.sqlite"
    try:
        wait_until(lambda: _accepted(fleet, "digest"), timeout=90)  # the second report on went as a digest
        assert fleet.api("findings", entry="tiktok")["total"] == 1
        with sqlite3.connect(database) as live, sqlite3.connect(backup) as copy:
            live.backup(copy)  # the fleet's state with TikTok installed
        status_file = tmp_path / "agent" / "root" / "var" / "lib" / "dpkg" / "status"
        status_file.write_text(DPKG_STATUS.split("\n\n", 1)[1])  # TikTok uninstalled: a whole report
        wait_until(lambda: fleet.api("findings", status="resolved")["total"] == 1, timeout=60)
        digests = len(_accepted(fleet, "digest"))
        wait_until(lambda: len(_accepted(fleet, "digest")) > digests, timeout=60)  # unchanged again: digests
        assert not fleet.events("ingest.refused")

        fleet.stop()  # restored from the backup: the fleet holds the inventory with TikTok
        accepted_before = len(fleet.events("ingest.accepted"))
        for leftover in database.parent.glob("fleet.sqlite*"):
            leftover.unlink()
        with sqlite3.connect(backup) as copy, sqlite3.connect(database) as restored:
            copy.backup(restored)
        fleet.start()
        assert fleet.api("findings", status="resolved")["total"] == 0
        refused = wait_until(lambda: [e for e in fleet.events("ingest.refused") if e["status"] == 409], timeout=60)
        wait_until(lambda: fleet.api("findings", status="resolved")["total"] == 1, timeout=60)
        resent = [e for e in fleet.events("ingest.accepted") if e["report"] in {r.get("report") for r in
                                                                                  agent.events("push.inventory_resent")}]
        assert resent and resent[0].get("inventory") is None and resent[0]["outcome"] == "changed"
        assert "send the inventory" in refused[0]["reason"]
        digests = len(_accepted(fleet, "digest"))
        wait_until(lambda: len(_accepted(fleet, "digest")) > digests, timeout=60)  # and digests again after
    finally:
        agent.stop()
        fleet.stop()
    sent = agent.events("push.sent")
    assert {e.get("inventory") for e in sent} == {"digest", "whole"}
    assert not agent.events("push.dead_lettered")
    # Every report accepted since the restore is stored once (digest sightings keep no key: a
    # retry is recognised by the device's last report id), on top of what the backup held.
    stored = [e["report"] for e in fleet.events("ingest.accepted")[accepted_before:] if e["outcome"] != "replayed"]
    with sqlite3.connect(backup) as copy:
        restored = copy.execute("SELECT reports FROM devices WHERE id = 'host-d'").fetchone()[0]
    with sqlite3.connect(database) as db:
        reports = db.execute("SELECT reports FROM devices WHERE id = 'host-d'").fetchone()[0]
    assert len(set(stored)) == len(stored) and reports == restored + len(stored)


def test_a_digest_the_fleet_does_not_hold_is_refused_and_nothing_is_kept(tmp_path: Path, database_url: str) -> None:
    """Without an agent, on SQLite and PostgreSQL: a digest push for a device whose stored state
    differs is a 409 that keeps nothing, not even its idempotency key, so the whole report under
    the same key is stored; a whole report (an agent of before the differential push) is answered
    with its digest."""
    fleet = FleetServer(write_fleet_config(tmp_path / "fleet", database=database_url))
    try:
        token = enroll_device(fleet, "host-o").json()["token"]
        whole = push(fleet, token, report("host-o", "r-1", "tiktok-desktop"))
        digest = whole.json()["inventory_digest"]
        assert whole.status_code == 200 and len(digest) == 64
        same = report("host-o", "r-2", "tiktok-desktop")
        del same["inventory"]
        answered = push(fleet, token, {**same, "inventory_digest": digest})
        assert answered.status_code == 200 and answered.json() == {
            "report": "r-2", "devices": 1, "changed": 0, "inventory_digest": digest}
        other = {**report("host-o", "r-3"), "inventory_digest": "0" * 64}
        del other["inventory"]
        refused = push(fleet, token, other)
        assert refused.status_code == 409 and "send the inventory" in refused.json()["error"]
        full = push(fleet, token, report("host-o", "r-3", "bash"))  # the same key, now whole
        assert full.status_code == 200 and full.json()["changed"] == 1 and "Idempotent-Replayed" not in full.headers
        assert full.json()["inventory_digest"] != digest
        device = fleet.api("devices/host-o")
        assert device["device"]["reports"] == 3  # r-1, r-2 and r-3 once each: the refusal kept nothing
        assert [f["entry"] for f in device["findings"] if f["resolved_at"]] == ["tiktok"]  # r-3 was stored whole
    finally:
        fleet.stop()


def test_the_outbox_remembers_the_digest_and_a_409_sends_the_same_report_whole(tmp_path: Path,
                                                                                database_url: str) -> None:
    """push_pending (the agent's push cycle) against a real fleet, on SQLite and PostgreSQL: the
    first report goes whole, the next with the same inventory as the digest, one whose claim
    changed with that digest gets a 409 and goes whole at once under the same key; the outbox
    ends empty, nothing dead-lettered."""
    import json

    from agent.banlist.fetch import make_session
    from agent.config import PushConfig
    from agent.report.outbox import Outbox
    from agent.report.push import push_pending

    fleet = FleetServer(write_fleet_config(tmp_path / "fleet", database=database_url))
    outbox = Outbox(tmp_path, max_queue=10)
    config = PushConfig(url=fleet.url, timeout=30.0)
    try:
        token = enroll_device(fleet, "host-p").json()["token"]
        first = report("host-p", "p-1", "tiktok-desktop")
        outbox.put("p-1", json.dumps(first).encode())
        with make_session(config) as session:
            assert push_pending(outbox, config, token, session).sent == 1
            acknowledged = outbox.acknowledged()
            assert acknowledged is not None and len(acknowledged.digest) == 64
            outbox.put("p-2", json.dumps({**first, "id": "p-2"}).encode())
            outbox.put("p-3", json.dumps({**first, "id": "p-3", "banlist": {"serial": 8}}).encode())
            result = push_pending(outbox, config, token, session)
        assert (result.sent, result.remaining, result.dead_lettered) == (2, 0, 0)
        assert outbox.acknowledged() == acknowledged  # the same inventory: the same digest
        accepted = {e["report"]: e for e in fleet.events("ingest.accepted")}
        assert (accepted["p-1"].get("inventory"), accepted["p-2"].get("inventory")) == (None, "digest")
        assert accepted["p-3"].get("inventory") is None and accepted["p-3"]["outcome"] == "changed"
        assert [e["status"] for e in fleet.events("ingest.refused")] == [409]
        assert fleet.api("devices/host-p")["device"]["reports"] == 3
    finally:
        outbox.close()
        fleet.stop()
