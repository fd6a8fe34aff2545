"""The push group commit, against a real `appban fleet serve` on SQLite: pushes that arrive while
the writer is busy share one transaction, a hostile or revoked push among them is refused alone
with its own 4xx, no push is answered before the transaction holding it committed, and after a
`kill -9` every acknowledged push is there (its retry is a replay) and nothing is doubled."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fleet_support import FleetServer, control, enroll, push, report, write_fleet_config
from tests.service_support import wait_until

pytestmark = pytest.mark.slow


def metric(fleet: FleetServer, name: str) -> float:
    """One unlabelled sample of the fleet's /metrics."""
    for line in fleet.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_pushes_arriving_together_share_a_transaction_and_a_hostile_one_is_refused_alone(tmp_path: Path) -> None:
    fleet = FleetServer(write_fleet_config(tmp_path / "fleet"))
    devices = [f"desk-{n}" for n in range(6)]
    try:
        tokens = {d: enroll(fleet, d).json()["token"] for d in devices}
        for device in devices:
            assert push(fleet, tokens[device], report(device, f"{device}-1", "bash")).status_code == 200
        assert control(fleet, "desk-5", "revoke").status_code == 200  # its token is still in the server's cache
        hostile = report("desk-4", "desk-4-2", "bash")
        hostile["inventory"]["apps"].append({"source": "dpkg"})  # an app without an id: refused while judging
        group = [report("desk-0", "desk-0-2", "bash"),  # unchanged
                 report("desk-1", "desk-1-2", "bash", "tiktok-desktop"),  # changed
                 report("desk-2", "desk-2-2", "bash"), report("desk-3", "desk-3-2"), hostile,
                 report("desk-5", "desk-5-2", "bash")]
        commits, committed = (metric(fleet, f"appban_fleet_ingest_{m}_total") for m in ("commits", "committed_pushes"))

        # Another process holds SQLite's write lock: the writer's first group waits for it, the
        # other pushes queue behind, and nobody may be answered while nothing is committed.
        database = sqlite3.connect(tmp_path / "fleet" / "fleet-state" / "fleet.sqlite", isolation_level=None)
        database.execute("BEGIN IMMEDIATE")
        with ThreadPoolExecutor(len(group)) as pool:
            answers: list[Future[requests.Response]] = []
            try:
                for number, document in enumerate(group):
                    device = document["devices"][0]["id"]
                    answers.append(pool.submit(push, fleet, tokens[device], document))
                    if number == 0:  # the writer takes it alone, and waits for the lock with it
                        time.sleep(0.5)
                wait_until(lambda: metric(fleet, "appban_fleet_ingest_queued") == len(group) - 1, timeout=30)
                time.sleep(0.5)
                assert not any(answer.done() for answer in answers)
            finally:
                database.execute("ROLLBACK")
                database.close()
            statuses = [answer.result(timeout=60).status_code for answer in answers]
        assert statuses == [200, 200, 200, 200, 422, 401]
        # One transaction for the first push to reach the writer, one for the five behind it.
        assert metric(fleet, "appban_fleet_ingest_commits_total") == commits + 2
        assert metric(fleet, "appban_fleet_ingest_committed_pushes_total") == committed + len(group)
        stored = {d["id"]: d for d in fleet.api("devices")["devices"]}
        assert {d: stored[d]["last_report"] for d in devices} == {
            "desk-0": "desk-0-2", "desk-1": "desk-1-2", "desk-2": "desk-2-2", "desk-3": "desk-3-2",
            "desk-4": "desk-4-1", "desk-5": "desk-5-1"}
        assert "tiktok" in {f["entry"] for f in fleet.api("findings", device="desk-1")["findings"]}
        assert "tiktok" not in {f["entry"] for f in fleet.api("findings", device="desk-0")["findings"]}
        refused = [(e["status"], e["device"]) for e in fleet.events("ingest.refused")]
        assert sorted(refused) == [(401, "desk-5"), (422, "desk-4")]
    finally:
        fleet.stop()


def test_every_acknowledged_push_survives_kill_9_and_none_is_doubled(tmp_path: Path) -> None:
    fleet = FleetServer(write_fleet_config(tmp_path / "fleet", logging={"format": "json", "level": "warning"}))
    devices = [f"host-{n}" for n in range(8)]
    acknowledged: dict[str, dict] = {}
    sent: dict[str, list[dict]] = {d: [report(d, f"{d}-{n}", "bash", f"tool-{n}") for n in range(40)] for d in devices}
    lock = threading.Lock()
    try:
        tokens = {d: enroll(fleet, d).json()["token"] for d in devices}

        def pusher(device: str) -> None:
            for document in sent[device]:
                try:
                    answer = push(fleet, tokens[device], document)
                except requests.RequestException:
                    return  # the server is gone mid-push: not acknowledged
                assert answer.status_code == 200, answer.text
                with lock:
                    acknowledged[document["id"]] = answer.json()

        threads = [threading.Thread(target=pusher, args=(d,)) for d in devices]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(acknowledged) >= 40, timeout=60, step=0.001)
        fleet.kill()  # mid-ingest, right after the acks: the pushes in flight get no answer
        for thread in threads:
            thread.join(30)
        fleet.start()
        # The agents' outboxes send again everything not acknowledged; an acknowledged push
        # retried (a lost answer) must be a replay of the same answer, never stored twice.
        for document_id, answer in acknowledged.items():
            device = document_id.rsplit("-", 1)[0]
            again = push(fleet, tokens[device], next(d for d in sent[device] if d["id"] == document_id))
            assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == answer, document_id
        for device in devices:
            for document in sent[device]:
                if document["id"] not in acknowledged:
                    assert push(fleet, tokens[device], document).status_code == 200
        stored = {d["id"]: d for d in fleet.api("devices", limit=100)["devices"]}
        assert {d: stored[d]["reports"] for d in devices} == {d: len(sent[d]) for d in devices}
        assert {d: stored[d]["last_report"] for d in devices} == {d: f"{d}-39" for d in devices}
    finally:
        fleet.stop()
