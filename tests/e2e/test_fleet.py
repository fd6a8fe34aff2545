"""`appban fleet serve` with real `appban run` agents (subprocesses, real dpkg databases in temp
trees, a real running banned program): enrollment, push with the inventory, central verdicts over
the CLI (local database and --server API), a removal resolved in `fleet history`, kill -9 of the
server mid-ingest, a pulled agent turning stale, and hostile requests refused with the store intact."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest
import requests

from tests.banlist_servers import free_port
from tests.conftest import REPO
from tests.fleet_support import ADMIN_TOKEN, ENROLL_SECRET, FleetServer, cli, fleet_agent, write_fleet_config
from tests.service_support import BANLIST, DPKG_STATUS, TOKEN, Daemon, banned_program, wait_until, write_config

pytestmark = pytest.mark.slow


def schema(name: str) -> dict:
    return json.loads((REPO / "docs" / "schemas" / f"{name}.schema.json").read_text())


def validate_with_refs(document: dict, name: str) -> None:
    """Validate against a schema that refers to the other fleet schemas by file name."""
    from referencing import Registry, Resource

    resources = [(path.name, Resource.from_contents(json.loads(path.read_text())))
                 for path in (REPO / "docs" / "schemas").glob("*.json")]
    registry = Registry().with_resources([(f"https://appban.invalid/schemas/{n}", r) for n, r in resources])
    jsonschema.Draft202012Validator(schema(name), registry=registry).validate(document)


def fleet_json(config: Path, *args: str) -> tuple[int, dict]:
    done = cli("fleet", *args, "--config", str(config), "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_agents_push_and_a_removal_is_resolved_in_history(tmp_path: Path) -> None:
    program = banned_program(tmp_path)
    fleet_list = BANLIST + f"  - id: chat-exe\n    name: Chat\n    match: {{executables: [{program.name}]}}\n"
    config = write_fleet_config(tmp_path / "fleet", banlist=fleet_list)
    secret = tmp_path / "fleet" / "enroll-secret"
    fleet = FleetServer(config)
    running = subprocess.Popen([str(program), "600"])
    fast = {"scan": "2s", "push": "1s", "splay": "1s"}
    minister = fleet_agent(tmp_path / "a", fleet, "minister-1", ["staff"], secret, schedule=fast)
    staff = fleet_agent(tmp_path / "b", fleet, "desk-2", ["staff"], secret, schedule=fast,
                        inventory={"root": "/", "sources": ["process"]})  # this machine's real processes
    try:
        wait_until(lambda: len(fleet.api("devices")["devices"]) == 2, timeout=90)
        wait_until(lambda: fleet.api("findings", entry="chat-exe")["findings"], timeout=60)
        code, status = fleet_json(config, "status")
        jsonschema.validate(status, schema("fleet-status-v1"))
        assert code == 1 and status["devices"]["total"] == 2 and status["devices"]["noncompliant"] == 2
        entries = {e["entry"]: e for e in status["entries"]}
        assert entries["tiktok"]["violation"] == 1
        assert (entries["wechat"]["violation"], entries["wechat"]["advisory"]) == (1, 0)  # ministers by central rule
        assert entries["chat-exe"]["violation"] == 1 and status["banlist_serials"] == {"7": 2}

        remote = cli("fleet", "status", "--server", fleet.url, "--token-file", str(tmp_path / "fleet" / "admin-token"),
                     "--format", "json")
        assert remote.returncode == 1 and json.loads(remote.stdout)["entries"] == status["entries"]
        code, devices = fleet_json(config, "devices", "--group", "ministers")
        jsonschema.validate(devices, schema("fleet-devices-v1"))
        assert [d["id"] for d in devices["devices"]] == ["minister-1"] and devices["devices"][0]["agent_groups"] == ["staff"]
        one = fleet.api("devices/minister-1")
        validate_with_refs(one, "fleet-device-v1")
        assert {f["entry"] for f in one["findings"]} == {"tiktok", "wechat", "drift:groups"}
        openapi = fleet.api("openapi.json")
        assert {"/api/v1/status", "/api/v1/devices", "/api/v1/devices/{device}", "/api/v1/findings",
                "/api/v1/history", "/v1/reports", "/v1/enroll"} <= set(openapi["paths"])
        assert fleet.get("/api/v1/devices/nobody").status_code == 404
        code, drift = fleet_json(config, "findings", "--status", "drift")
        assert {(f["device"], f["entry"]) for f in drift["findings"]} == {("minister-1", "drift:groups")}

        # The banned program stops and TikTok is uninstalled on the minister's machine.
        running.kill()
        running.wait()
        status_file = tmp_path / "a" / "root" / "var" / "lib" / "dpkg" / "status"
        status_file.write_text(DPKG_STATUS.split("\n\n", 1)[1])
        wait_until(lambda: fleet.api("findings", status="resolved")["total"] == 2, timeout=60)
        code, history = fleet_json(config, "history", "--device", "minister-1")
        jsonschema.validate(history, schema("fleet-history-v1"))
        resolved = [e for e in history["events"] if e["event"] == "resolved"]
        assert [(e["entry"], e["app"]) for e in resolved] == [("tiktok", "tiktok-desktop")] and resolved[0]["at"]
        code, found = fleet_json(config, "findings", "--entry", "tiktok", "--status", "resolved")
        jsonschema.validate(found, schema("fleet-findings-v1"))
        assert [(f["device"], f["resolved_at"] is not None) for f in found["findings"]] == [("minister-1", True)]
        code, chat = fleet_json(config, "findings", "--entry", "chat-exe", "--status", "resolved")
        assert [f["device"] for f in chat["findings"]] == ["desk-2"]
        table = cli("fleet", "history", "--entry", "tiktok", "--config", str(config))
        assert table.returncode == 0 and "resolved" in table.stdout and "minister-1" in table.stdout
        # Unchanged reports keep coming (every 2 s) and only move last_seen.
        wait_until(lambda: [e for e in fleet.events("ingest.accepted") if e["outcome"] == "unchanged"], timeout=60)
    finally:
        running.kill()
        minister.stop()
        staff.stop()
        fleet.stop()
    token = (tmp_path / "a" / "state" / "fleet-token").read_text().strip()
    assert (tmp_path / "a" / "state" / "fleet-token").stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(tmp_path / "fleet" / "fleet-state" / "fleet.sqlite") as db:
        stored = db.execute("SELECT token_hash FROM enrollments WHERE device_id = 'minister-1'").fetchone()[0]
    assert token not in stored and len(stored) == 64


def test_kill_9_mid_ingest_loses_and_doubles_nothing(tmp_path: Path) -> None:
    config = write_fleet_config(tmp_path / "fleet")
    fleet = FleetServer(config)
    agent_dir = tmp_path / "agent"
    agent = fleet_agent(agent_dir, fleet, "host-k", ["staff"], tmp_path / "fleet" / "enroll-secret",
                        schedule={"scan": "1s", "push": "1s", "splay": "1s"})
    made: list[str] = []
    try:
        for _ in range(3):
            wait_until(lambda: fleet.events("ingest.accepted"), timeout=60)
            fleet.kill()  # mid-stream: the agent keeps scanning and pushing into a dead port
            time.sleep(1.5)
            fleet.start()
        wait_until(lambda: len(agent.events("scan.done")) >= 6, timeout=60)
        agent.signal(signal.SIGTERM)
        agent.wait(30)
    finally:
        agent.stop()
    made += [e["report"] for e in agent.events("scan.done")]
    # A second run (scan 1h) pushes what the first left queued, plus its own first report.
    calm = fleet_agent(agent_dir, fleet, "host-k", ["staff"], tmp_path / "fleet" / "enroll-secret")
    try:
        wait_until(lambda: calm.events("scan.done"), timeout=60)
        made += [e["report"] for e in calm.events("scan.done")]
        wait_until(lambda: fleet.api("devices")["devices"][0]["reports"] >= len(set(made)), timeout=60)
        time.sleep(3)
        device = fleet.api("devices")["devices"][0]
        assert device["reports"] == len(set(made)) == len(made)  # every report once: none lost, none doubled
        assert device["last_report"] == made[-1]
    finally:
        calm.stop()
        fleet.stop()


def test_a_pulled_agent_turns_stale_and_is_kept(tmp_path: Path) -> None:
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()

    port = free_port()
    agent_config = write_config(agent_dir, device={"id": "pulled-1", "groups": ["staff"]},
                                server={"listen": f"127.0.0.1:{port}", "token_file": str(agent_dir / "token")})
    config = write_fleet_config(tmp_path / "fleet", stale_after="4s", pull={
        "targets": [{"url": f"http://127.0.0.1:{port}", "token_file": str(agent_dir / "token")}],
        "interval": "1s", "timeout": 2.0, "max_backoff": "2s"})
    agent = Daemon(agent_config)
    fleet = FleetServer(config)
    try:
        wait_until(lambda: fleet.api("devices")["devices"], timeout=60)
        device = fleet.api("devices")["devices"][0]
        assert (device["id"], device["source"], device["stale"]) == ("pulled-1", "pull", False)
        assert fleet.api("findings", device="pulled-1", entry="tiktok")["findings"]
        agent.signal(signal.SIGTERM)
        agent.wait(30)
        wait_until(lambda: fleet.api("devices", stale="1")["devices"], timeout=60)
        wait_until(lambda: fleet.events("pull.failed"), timeout=30)
        assert [d["id"] for d in fleet.api("devices")["devices"]] == ["pulled-1"]
        code, status = fleet_json(config, "status")
        assert status["devices"]["stale"] == 1 and code == 1
    finally:
        agent.stop()
        fleet.stop()
    assert TOKEN not in (tmp_path / "fleet" / "fleet.yaml").read_text()


def _files(database: Path) -> dict[str, str]:
    """SHA-256 of the database file and its WAL: any write by the server changes one of them."""
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (database, database.with_name(database.name + "-wal")) if p.exists()}


def _dump(database: Path) -> list[str]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return list(db.iterdump())


def test_hostile_requests_are_refused_and_the_store_is_intact(tmp_path: Path) -> None:
    config = write_fleet_config(tmp_path / "fleet", max_body=65536, request_timeout=2.0)
    fleet = FleetServer(config)
    url = fleet.url
    try:
        tokens = {}
        for device in ("host-a", "host-b"):
            answer = requests.post(f"{url}/v1/enroll", json={"secret": ENROLL_SECRET, "device": device}, timeout=10)
            assert answer.status_code == 200
            tokens[device] = answer.json()["token"]
        good = {"format": "appban.report/v1", "id": "good-1", "agent": {"version": "1"}, "banlist": {"serial": 7},
                "devices": [{"id": "host-a", "groups": ["staff"]}], "findings": [],
                "inventory": {"format": "appban.inventory/v1", "devices": [{"id": "host-a"}],
                              "apps": [{"source": "dpkg", "id": "tiktok-desktop", "device": "host-a"}]}}
        a = {"Authorization": f"Bearer {tokens['host-a']}"}
        first = requests.post(f"{url}/v1/reports", json=good, headers={**a, "Idempotency-Key": "good-1"}, timeout=10)
        assert first.status_code == 200
        database = tmp_path / "fleet" / "fleet-state" / "fleet.sqlite"
        before_bytes = _files(database)
        before = _dump(database)
        other = {**good, "id": "evil", "devices": [{"id": "host-b"}]}
        smuggled = {**good, "id": "evil2", "inventory": {**good["inventory"], "apps": [
            {"source": "dpkg", "id": "x", "device": "host-b"}]}}
        cases = [
            ("no token", "/v1/reports", {}, json.dumps(good), 401),
            ("admin token is not a device token", "/v1/reports", {"Authorization": f"Bearer {ADMIN_TOKEN}"},
             json.dumps(good), 401),
            ("wrong token", "/v1/reports", {"Authorization": "Bearer nope"}, json.dumps(good), 401),
            ("another device's id", "/v1/reports", a, json.dumps(other), 403),
            ("another device smuggled in", "/v1/reports", a, json.dumps(smuggled), 403),
            ("malformed JSON", "/v1/reports", a, '{"format": "appban.report/v1", ', 400),
            ("wrong format", "/v1/reports", a, json.dumps({**good, "id": "w", "format": "appban.banlist/v1"}), 422),
            ("huge body", "/v1/reports", a, json.dumps({**good, "id": "h", "notes": ["x" * 70000]}), 413),
            ("huge key", "/v1/reports", {**a, "Idempotency-Key": "k" * 300}, json.dumps(good), 400),
            ("wrong enroll secret", "/v1/enroll", {}, json.dumps({"secret": "guess", "device": "host-c"}), 401),
            ("a known device id, the secret alone", "/v1/enroll", {},
             json.dumps({"secret": ENROLL_SECRET, "device": "host-a"}), 409),
            ("a rotation with another device's token", "/v1/enroll", {"Authorization": f"Bearer {tokens['host-b']}"},
             json.dumps({"secret": ENROLL_SECRET, "device": "host-a"}), 401),
            ("revoke without the admin token", "/api/v1/devices/host-a/revoke", a, "{}", 401),
            ("control characters in a device id", "/v1/enroll", {},
             json.dumps({"secret": ENROLL_SECRET, "device": "evil\n{\"event\": \"forged\"}"}), 422),
        ]
        for case, path, headers, body, expected in cases:
            answer = requests.post(f"{url}{path}", data=body.encode(), timeout=10,
                                   headers={"Content-Type": "application/json", **headers})
            assert (case, answer.status_code) == (case, expected)
            assert "error" in answer.json()
        # A client that trickles its body is cut off after request_timeout.
        import socket

        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as slow:
            slow.sendall(f"POST /v1/reports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tokens['host-a']}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode())
            answer = slow.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 408")
        reads = [("/api/v1/status", ""), ("/api/v1/status", tokens["host-a"]), ("/metrics", tokens["host-a"]),
                 ("/api/v1/devices", "nope")]
        for path, token in reads:
            assert fleet.get(path, token=token).status_code == 401, path
        assert fleet.get("/", token="").url.endswith("/login")
        assert _files(database) == before_bytes  # byte for byte
        replay = requests.post(f"{url}/v1/reports", json=good, headers={**a, "Idempotency-Key": "good-1"}, timeout=10)
        assert (replay.status_code, replay.json()) == (200, first.json())
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert _dump(database) == before
        refused = fleet.events("ingest.refused")
        assert len(refused) == len(cases) + 1  # the trickling client too
        assert all("\n" not in json.dumps(e["reason"]) for e in refused)
        assert not [line for line in fleet.log_path.read_text().splitlines() if line.startswith('{"event": "forged"')]
    finally:
        fleet.stop()


def test_no_verdict_is_exit_2_with_one_line(tmp_path: Path) -> None:
    config = write_fleet_config(tmp_path / "fleet")
    (tmp_path / "broken.json").write_text('{"format": "appban.inventory/v1", "apps": "nope"}')
    unreachable = f"http://127.0.0.1:{free_port()}"
    no_admin = write_fleet_config(tmp_path / "bare", admin_token_file="")
    no_database = write_fleet_config(tmp_path / "nodb", database=f"postgresql+psycopg://u:pw@127.0.0.1:{free_port()}/db")
    other_engine = write_fleet_config(tmp_path / "mysql", database="mysql://u:pw@db.example/fleet")
    cases = [
        ("fleet", "import", str(tmp_path / "broken.json"), "--config", str(config)),
        ("fleet", "import", str(tmp_path / "missing.csv"), "--config", str(config)),
        ("fleet", "status", "--server", unreachable, "--token-file", str(tmp_path / "fleet" / "admin-token")),
        ("fleet", "status", "--server", unreachable),
        ("fleet", "findings", "--since", "last tuesday", "--config", str(config)),
        ("fleet", "history", "--config", str(config)),
        ("fleet", "serve", "--config", str(no_admin)),
        ("fleet", "serve", "--config", str(no_database)),
        ("fleet", "status", "--config", str(other_engine)),
        ("fleet", "status", "--config", str(tmp_path / "nope.yaml")),
    ]
    for args in cases:
        done = cli(*args)
        assert (args, done.returncode) == (args, 2)
        assert done.stderr.startswith("appban: ") and done.stderr.count("\n") == 1, done.stderr
        assert ":pw@" not in done.stderr  # a database password is never shown
    empty = cli("fleet", "status", "--config", str(config))
    assert empty.returncode == 0 and "devices: 0 total" in empty.stdout


def test_tls_with_required_client_certificates(tmp_path: Path) -> None:
    from tests.banlist_servers import make_pki

    pki = make_pki(tmp_path / "pki")
    config = write_fleet_config(tmp_path / "fleet", tls_cert=str(pki.server_cert), tls_key=str(pki.server_key),
                                tls_client_ca=str(pki.ca))
    fleet = FleetServer(config)
    secret = tmp_path / "fleet" / "enroll-secret"
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    push = {"url": fleet.url, "enroll_secret_file": str(secret), "ca_bundle": str(pki.ca),
            "client_cert": str(pki.client_cert), "client_key": str(pki.client_key)}
    agent = Daemon(write_config(agent_dir, device={"id": "tls-host", "groups": ["staff"]}, push=push))
    try:
        wait_until(lambda: fleet.api("devices")["devices"], timeout=60)
        assert fleet.api("devices")["devices"][0]["id"] == "tls-host"
        with pytest.raises(requests.exceptions.ConnectionError):  # no client certificate: the server hangs up
            requests.get(f"{fleet.url}/healthz", verify=str(pki.ca), timeout=10)
        with pytest.raises(requests.exceptions.SSLError):  # the server's certificate is checked too
            requests.get(f"{fleet.url}/healthz", verify=str(pki.other_ca), timeout=10,
                         cert=(str(pki.client_cert), str(pki.client_key)))
    finally:
        agent.stop()
        fleet.stop()


def test_enroll_secret_is_created_printed_and_rotated(tmp_path: Path) -> None:
    config = write_fleet_config(tmp_path / "fleet", enroll_secret_file="")
    secret_file = tmp_path / "fleet" / "fleet-state" / "enroll-secret"
    first = cli("fleet", "enroll-secret", "--config", str(config))
    assert first.returncode == 0 and secret_file.read_text().strip() == first.stdout.strip()
    assert secret_file.stat().st_mode & 0o777 == 0o600 and len(first.stdout.strip()) >= 32
    assert cli("fleet", "enroll-secret", "--config", str(config)).stdout == first.stdout
    fleet = FleetServer(config)
    try:
        devices = iter(range(10))

        def enroll(secret: str) -> int:  # a new device id each time: a known one needs the administrator's leave
            return requests.post(f"{fleet.url}/v1/enroll", json={"secret": secret, "device": f"d{next(devices)}"},
                                 timeout=10).status_code

        assert enroll(first.stdout.strip()) == 200
        rotated = cli("fleet", "enroll-secret", "--rotate", "--config", str(config)).stdout.strip()
        assert rotated != first.stdout.strip()
        assert (enroll(first.stdout.strip()), enroll(rotated)) == (401, 200)  # no restart needed
    finally:
        fleet.stop()


def test_an_agent_enrolls_again_when_the_fleet_forgot_it(tmp_path: Path) -> None:
    config = write_fleet_config(tmp_path / "fleet")
    fleet = FleetServer(config)
    agent = fleet_agent(tmp_path / "agent", fleet, "host-r", ["staff"], tmp_path / "fleet" / "enroll-secret",
                        schedule={"scan": "1s", "push": "1s", "splay": "1s"})
    token_file = tmp_path / "agent" / "state" / "fleet-token"
    try:
        wait_until(lambda: fleet.api("devices")["devices"], timeout=60)
        first_token = token_file.read_text()
        fleet.stop()
        for leftover in (tmp_path / "fleet" / "fleet-state").glob("fleet.sqlite*"):
            leftover.unlink()  # a fleet rebuilt from scratch: the agent's token means nothing to it
        fleet.start()
        wait_until(lambda: fleet.api("devices")["devices"], timeout=60)
        assert token_file.read_text() != first_token
        assert len(agent.events("push.enrolled")) == 2
        assert any(e.get("error") == "HTTP 401" for e in agent.events("push.failed"))
    finally:
        agent.stop()
        fleet.stop()
