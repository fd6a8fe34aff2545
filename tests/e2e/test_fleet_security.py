"""The fleet's security limits, against real `appban fleet serve` processes and real `appban run`
agents: re-enrolling a known device id (a takeover with the enroll secret) is refused until the
administrator allows it, replaced and revoked tokens stop working at once (also across two servers
on one PostgreSQL database), and a client trickling its request headers is cut off while others
are served (raw sockets)."""

from __future__ import annotations

import select
import shutil
import socket
import time
from pathlib import Path

import pytest
import requests

from tests.fleet_support import FleetServer, cli, control, enroll, fleet_agent, push, report, write_fleet_config
from tests.service_support import wait_until

pytestmark = pytest.mark.slow


def test_a_known_device_id_is_not_taken_over_with_the_enroll_secret(tmp_path: Path) -> None:
    config = write_fleet_config(tmp_path / "fleet")
    fleet = FleetServer(config)
    secret = tmp_path / "fleet" / "enroll-secret"
    fast = {"scan": "1s", "push": "1s", "splay": "1s"}
    agent = fleet_agent(tmp_path / "agent", fleet, "desk-7", ["staff"], secret, schedule=fast)
    try:
        wait_until(lambda: fleet.api("devices")["devices"], timeout=90)
        # Someone else holding the enroll secret asks for desk-7's token.
        taken = enroll(fleet, "desk-7")
        assert taken.status_code == 409 and "appban fleet reenroll desk-7" in taken.json()["error"]
        refused = [e for e in fleet.events("ingest.refused") if e["path"] == "/v1/enroll"]
        assert [(e["status"], e["device"]) for e in refused] == [(409, "desk-7")]
        assert enroll(fleet, "desk-7", token="not-its-token").status_code == 401
        # The real agent still has its token and keeps pushing.
        pushed = len(fleet.events("ingest.accepted"))
        wait_until(lambda: len(fleet.events("ingest.accepted")) > pushed + 1, timeout=60)
        assert len(agent.events("push.enrolled")) == 1

        # The machine is reinstalled: the agent lost its state, so it cannot prove who it is.
        agent.stop()
        shutil.rmtree(tmp_path / "agent" / "state")
        agent = fleet_agent(tmp_path / "agent", fleet, "desk-7", ["staff"], secret, schedule=fast)
        wait_until(lambda: agent.events("push.enroll_failed"), timeout=60)
        error = agent.events("push.enroll_failed")[0]["error"]
        assert "HTTP 409" in error and "appban fleet reenroll desk-7" in error and "\n" not in error
        assert not agent.events("push.enrolled")

        # The administrator allows it: the agent enrolls and pushes what it queued meanwhile.
        allowed = cli("fleet", "reenroll", "desk-7", "--config", str(config))
        assert allowed.returncode == 0, allowed.stderr
        wait_until(lambda: agent.events("push.enrolled"), timeout=60)
        wait_until(lambda: fleet.api("devices/desk-7")["device"]["last_report"]
                   in {e["report"] for e in agent.events("scan.done")}, timeout=60)
        assert enroll(fleet, "desk-7").status_code == 409  # the leave was used up
        history = [e["event"] for e in fleet.api("devices/desk-7")["enrollment"]]
        assert history == ["enrolled", "reenroll_allowed", "reenrolled"]
        page = fleet.get("/devices/desk-7").text
        assert "<td>reenroll_allowed</td><td>cli</td>" in page and "<td>reenrolled</td>" in page
        unknown = cli("fleet", "revoke", "nobody", "--config", str(config))
        assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "nobody" in unknown.stderr
    finally:
        agent.stop()
        fleet.stop()


def _rotate_and_revoke(first: FleetServer, second: FleetServer, admin_token_file: Path) -> None:
    """Enroll and push through `first` (its cache now knows the token), rotate and revoke through
    `second`: each replaced token is refused by `first` on the very next push."""
    old = enroll(first, "host-r").json()["token"]
    assert push(first, old, report("host-r", "r1", "bash")).status_code == 200
    assert push(first, old, report("host-r", "r2", "bash")).status_code == 200  # the unchanged fast path
    rotated = enroll(second, "host-r", token=old)
    assert rotated.status_code == 200
    new = rotated.json()["token"]
    for path in ("r3", "r3b"):  # refused on both paths: unchanged (fast) and changed
        apps = ("bash",) if path == "r3" else ("bash", "tiktok-desktop")
        assert push(first, old, report("host-r", path, *apps)).status_code == 401
    assert push(first, new, report("host-r", "r4", "bash")).status_code == 200
    assert push(first, new, report("host-r", "r5", "bash")).status_code == 200
    revoked = cli("fleet", "revoke", "host-r", "--server", second.url, "--token-file", str(admin_token_file))
    assert revoked.returncode == 0, revoked.stderr
    assert push(first, new, report("host-r", "r6", "bash")).status_code == 401
    assert enroll(first, "host-r", token=new).status_code == 401  # a revoked token rotates nothing
    assert enroll(first, "host-r").status_code == 409
    assert control(second, "host-r", "revoke", token=new).status_code == 401  # a device token is no admin token
    assert control(second, "host-r", "reenroll").status_code == 200
    again = enroll(first, "host-r").json()["token"]
    assert push(first, again, report("host-r", "r7", "bash")).status_code == 200
    device = first.api("devices/host-r")
    assert device["device"]["last_report"] == "r7" and device["device"]["reports"] == 5
    assert [e["event"] for e in device["enrollment"]] == ["enrolled", "rotated", "revoked", "reenroll_allowed",
                                                          "reenrolled"]
    assert {e["actor"].split()[0] for e in device["enrollment"]} == {"client", "api"}


def test_replaced_and_revoked_tokens_stop_at_once(tmp_path: Path) -> None:
    fleet = FleetServer(write_fleet_config(tmp_path / "fleet"))
    try:
        _rotate_and_revoke(fleet, fleet, tmp_path / "fleet" / "admin-token")
    finally:
        fleet.stop()


def test_replaced_and_revoked_tokens_stop_at_once_on_every_server(tmp_path: Path, pg_database: str) -> None:
    one = FleetServer(write_fleet_config(tmp_path / "one", database=pg_database))
    two = FleetServer(write_fleet_config(tmp_path / "two", database=pg_database))
    try:
        _rotate_and_revoke(one, two, tmp_path / "two" / "admin-token")
        assert two.api("devices/host-r")["device"]["reports"] == 5
    finally:
        one.stop()
        two.stop()


def _connect(address: str, port: int, source: str, first: bytes) -> socket.socket:
    """A raw TCP client from loopback address `source` (the server tells clients apart by address)."""
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.bind((source, 0))
    client.settimeout(10)
    client.connect((address, port))
    if first:
        client.sendall(first)
    return client


def test_slow_clients_are_cut_off_while_others_are_served(tmp_path: Path) -> None:
    config = write_fleet_config(tmp_path / "fleet", header_timeout=2.0, request_timeout=3.0, max_connections=32,
                                max_connections_per_client=4)
    fleet = FleetServer(config)
    host, port = fleet.url.removeprefix("http://").split(":")
    clients: dict[str, socket.socket] = {}
    try:
        for n in range(4):  # slowloris: a request line, then one header byte at a time
            clients[f"headers-{n}"] = _connect(host, int(port), "127.0.0.2", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-")
        clients["silent"] = _connect(host, int(port), "127.0.0.3", b"")
        # A route that answers without reading the body; the client then trickles the body.
        clients["body"] = _connect(host, int(port), "127.0.0.4", b"POST /api/v1/status HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: 100000\r\n\r\n{")
        # Kept alive: one quick request, then the next one trickles (the deadline starts again).
        clients["second"] = _connect(host, int(port), "127.0.0.5", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b"ok\n"):  # headers and body may come in two segments
            first += clients["second"].recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        clients["second"].sendall(b"GET /healthz HTTP/1.1\r\nX-")
        extra = _connect(host, int(port), "127.0.0.2", b"")  # a fifth connection from the same address
        assert extra.recv(4096).startswith(b"HTTP/1.1 503") and extra.recv(4096) == b""
        extra.close()
        answers: dict[str, bytes] = {name: b"" for name in clients}
        open_ = set(clients)
        start = time.monotonic()
        while open_ and time.monotonic() - start < 60:
            for name in sorted(open_):
                try:
                    if name != "silent":
                        clients[name].sendall(b"a")
                    readable, _, _ = select.select([clients[name]], [], [], 0)
                    if readable:
                        chunk = clients[name].recv(4096)
                        answers[name] += chunk
                        if not chunk:
                            open_.discard(name)
                except (BrokenPipeError, ConnectionResetError):
                    open_.discard(name)
            assert requests.get(f"{fleet.url}/healthz", timeout=10).status_code == 200  # others are served
            time.sleep(0.5)
        assert not open_, f"still connected after 60 s: {sorted(open_)}"
        assert all(answers[name].startswith(b"HTTP/1.1 408") for name in (*(f"headers-{n}" for n in range(4)),
                                                                           "second")), answers
        assert answers["silent"] == b"" and answers["body"].startswith(b"HTTP/1.1 405")
        slow = fleet.events("fleet.slow_client")
        assert sorted(e["phase"] for e in slow) == ["body"] + ["headers"] * 5
        assert [e["client"] for e in fleet.events("fleet.busy")] == ["127.0.0.2"]
        metrics = fleet.get("/metrics").text
        assert 'appban_fleet_refused_requests_total{status="408"} 6.0' in metrics
        assert 'appban_fleet_refused_requests_total{status="503"} 1.0' in metrics
    finally:
        for client in clients.values():
            client.close()
        fleet.stop()
