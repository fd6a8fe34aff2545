"""Two `appban fleet serve` processes on one real PostgreSQL database (the test cluster of
tests/postgres.py), as behind a load balancer: a real agent pushes to one, the other shows it, a
web session made on one is accepted by the other, and both share one pull target — also one that
only one server's targets file names, which the other keeps polling when that server is killed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import yaml
from sqlalchemy import create_engine, text

from tests.fleet_support import ADMIN_TOKEN, FleetServer, cli, fleet_agent, pulled_agent, write_fleet_config
from tests.service_support import wait_until

pytestmark = pytest.mark.slow


def test_two_servers_share_one_database(tmp_path: Path, pg_database: str) -> None:
    pulled, target = pulled_agent(tmp_path / "pulled", "pulled-1")
    pull = {"targets": [target], "interval": "1s", "timeout": 2.0}
    first = write_fleet_config(tmp_path / "one", database=pg_database, pull=pull)
    second = write_fleet_config(tmp_path / "two", database=pg_database, pull=pull)
    one, two = FleetServer(first), FleetServer(second)
    agent = fleet_agent(tmp_path / "agent", one, "minister-9", ["staff"], tmp_path / "one" / "enroll-secret")
    try:
        wait_until(lambda: {d["id"] for d in two.api("devices")["devices"]} == {"minister-9", "pulled-1"}, timeout=90)
        status = json.loads(cli("fleet", "status", "--config", str(second), "--format", "json").stdout)
        assert status["devices"]["total"] == 2
        assert {e["entry"]: e["violation"] for e in status["entries"]}["tiktok"] == 2
        session = requests.Session()
        assert session.post(f"{one.url}/login", data={"token": ADMIN_TOKEN}, timeout=10).status_code == 200
        cookies = session.cookies.get_dict()
        page = requests.get(f"{two.url}/", cookies=cookies, timeout=10)
        assert page.status_code == 200 and "Fleet overview" in page.text
        engine = create_engine(pg_database)
        with engine.connect() as connection:
            targets = connection.execute(text("SELECT url, device_id, failures FROM pull_targets")).all()
            version = connection.scalar(text("SELECT version_num FROM alembic_version"))
        engine.dispose()
        assert [(t.device_id, t.failures) for t in targets] == [("pulled-1", 0)] and version == "0002"
    finally:
        agent.stop()
        pulled.stop()
        one.stop()
        two.stop()


def test_one_servers_pull_targets_are_shared_with_the_others(tmp_path: Path, pg_database: str) -> None:
    pulled, target = pulled_agent(tmp_path / "pulled", "pulled-2")
    targets = tmp_path / "targets.yaml"
    targets.write_text(yaml.safe_dump([{"targets": [target["url"]], "labels": {"token_file": target["token_file"]}}]))
    timing = {"interval": "1s", "timeout": 2.0, "max_backoff": "2s"}
    one = FleetServer(write_fleet_config(tmp_path / "one", database=pg_database,
                                         pull={"targets_file": str(targets), **timing}))
    two = None
    engine = create_engine(pg_database)

    def listed() -> list[str]:
        with engine.connect() as connection:
            return list(connection.scalars(text("SELECT url FROM pull_targets")))

    try:
        wait_until(lambda: pulled_only(one), timeout=90)
        two = FleetServer(write_fleet_config(tmp_path / "two", database=pg_database, pull=timing))  # no targets
        one.kill()  # the only server whose config names the agent
        seen = two.api("devices/pulled-2")["device"]["last_seen"]
        wait_until(lambda: two.api("devices/pulled-2")["device"]["last_seen"] > seen, timeout=90)
        one.start()
        targets.write_text("[]\n")  # the agent leaves the shared list with the one config that named it
        wait_until(lambda: not listed(), timeout=60)
        assert two.api("devices/pulled-2")["device"]["id"] == "pulled-2"  # the device itself is kept
    finally:
        engine.dispose()
        pulled.stop()
        one.stop()
        if two is not None:
            two.stop()


def pulled_only(fleet: FleetServer) -> bool:
    return [d["id"] for d in fleet.api("devices")["devices"]] == ["pulled-2"]
