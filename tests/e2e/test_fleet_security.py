"""The fleet's security limits, against real `appban fleet serve` processes and real `appban run`
agents: re-enrolling a known device id (a takeover with the enroll secret) is refused until the
administrator allows it, replaced and revoked tokens stop working at once (also across two servers
on one PostgreSQL database), and a client trickling its request headers is cut off while others
are served (raw sockets)."""

from __future__ import annotations

import http.server
import shutil
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
import requests

from tests.fleet_support import (FleetServer, cli, control, enroll, fleet_agent, push, report, stand_in_server,
                                 write_fleet_config)
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


def _without_httptools(folder: Path) -> dict[str, str]:
    """The server's environment as where httptools is not installed: its import fails, so the
    listener falls back to uvicorn's h11 protocol."""
    shim = folder / "httptools"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text('raise ImportError("httptools is blocked by the test")\n')
    return {"PYTHONPATH": str(folder)}


def _until_closed(clients: dict[str, socket.socket], silent: set[str], served: Callable[[], bool],
                  seconds: float = 60) -> dict[str, bytes]:
    """Trickle one byte every half second on each client but the `silent` ones, collect what each
    reads, until the server closed them all or `seconds` passed; `served()` (a quick request of
    another client) must hold every round. Return what each read; fail if any is still open."""
    answers: dict[str, bytes] = {name: b"" for name in clients}
    open_ = set(clients)
    for client in clients.values():
        client.setblocking(False)
    start = time.monotonic()
    while open_ and time.monotonic() - start < seconds:
        for name in sorted(open_):
            try:
                if name not in silent:
                    clients[name].sendall(b"a")
                chunk = clients[name].recv(4096)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            except (BrokenPipeError, ConnectionResetError):
                chunk = b""
            answers[name] += chunk
            if not chunk:
                open_.discard(name)
        assert served()
        time.sleep(0.5)
    assert not open_, f"still connected after {seconds:g} s: {sorted(open_)}"
    return answers


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_slow_clients_are_cut_off_while_others_are_served(tmp_path: Path, http: str) -> None:
    config = write_fleet_config(tmp_path / "fleet", header_timeout=2.0, request_timeout=3.0, max_connections=32,
                                max_connections_per_client=4)
    fleet = FleetServer(config, env=_without_httptools(tmp_path / "shim") if http == "h11" else None)
    assert [e["http"] for e in fleet.events("fleet.started")] == [http]
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
        answers = _until_closed(clients, {"silent"},
                                lambda: requests.get(f"{fleet.url}/healthz", timeout=10).status_code == 200)
        assert all(answers[name].startswith(b"HTTP/1.1 408") for name in (*(f"headers-{n}" for n in range(4)),
                                                                           "second")), answers
        assert answers["silent"] == b"" and answers["body"].startswith(b"HTTP/1.1 405")
        slow = fleet.events("fleet.slow_client")
        assert sorted(e["phase"] for e in slow) == ["body"] + ["headers"] * 5
        assert [e["client"] for e in fleet.events("fleet.busy")] == ["127.0.0.2"]
        _assert_refused(fleet, timed_out=6, turned_away=1)
    finally:
        for client in clients.values():
            client.close()
        fleet.stop()


def _assert_refused(fleet: FleetServer, timed_out: int, turned_away: int) -> None:
    """The fleet's refusal metric counts these connections cut off (408) and turned away (503)."""
    metrics = fleet.get("/metrics").text
    assert f'appban_fleet_refused_requests_total{{status="408"}} {timed_out:.1f}' in metrics
    assert f'appban_fleet_refused_requests_total{{status="503"}} {turned_away:.1f}' in metrics


def _client_hello(context: ssl.SSLContext) -> bytes:
    """The ClientHello a real TLS client sends first (from an in-memory handshake)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    handshake = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        handshake.do_handshake()
    return outgoing.read()


def test_tls_handshakes_are_bounded_and_counted(tmp_path: Path) -> None:
    from tests.banlist_servers import make_pki

    pki = make_pki(tmp_path / "pki")
    config = write_fleet_config(tmp_path / "fleet", tls_cert=str(pki.server_cert), tls_key=str(pki.server_key),
                                header_timeout=2.0, max_connections_per_client=3)
    fleet = FleetServer(config)
    assert [e["tls"] for e in fleet.events("fleet.started")] == [True]
    host, port = fleet.url.removeprefix("https://").split(":")
    trusted = ssl.create_default_context(cafile=str(pki.ca))
    hello = _client_hello(trusted)
    clients: dict[str, socket.socket] = {}
    try:
        # Three connections from one address that never finish the handshake: asyncio alone
        # would hold each for 60 s, uncounted.
        clients["silent-1"] = _connect(host, int(port), "127.0.0.2", b"")
        clients["silent-2"] = _connect(host, int(port), "127.0.0.2", b"")
        clients["half-hello"] = _connect(host, int(port), "127.0.0.2", hello[: len(hello) // 2])
        # A fourth from that address (accepted after them: the backlog is first in, first out) is
        # turned away before any handshake work.
        extra = _connect(host, int(port), "127.0.0.2", b"")
        assert extra.recv(4096) == b""
        extra.close()
        wait_until(lambda: [e["client"] for e in fleet.events("fleet.busy")] == ["127.0.0.2"], timeout=10)
        # A client that finishes the handshake and then trickles its headers gets the usual 408.
        tls_client = trusted.wrap_socket(_connect(host, int(port), "127.0.0.3", b""), server_hostname="localhost")
        tls_client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-")
        clients["tls-headers"] = tls_client
        answers = _until_closed(clients, {"silent-1", "silent-2", "half-hello"},
                                lambda: requests.get(f"{fleet.url}/healthz", timeout=10,
                                                     verify=str(pki.ca)).status_code == 200, seconds=30)
        assert answers["tls-headers"].startswith(b"HTTP/1.1 408"), answers
        assert all(answers[name] == b"" for name in ("silent-1", "silent-2", "half-hello")), answers
        slow = fleet.events("fleet.slow_client")
        assert sorted(e["phase"] for e in slow) == ["headers"] + ["tls"] * 3
        assert {e["client"] for e in slow if e["phase"] == "tls"} == {"127.0.0.2"}
        _assert_refused(fleet, timed_out=4, turned_away=1)
    finally:
        for client in clients.values():
            client.close()
        fleet.stop()


def _hung_up(sock: socket.socket) -> bool:
    """Whether the peer closed this connection (a handler asleep between writes has not noticed yet)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class _HostileAgents:
    """Stand-ins for pulled agents that misbehave, on one port: `/slow-N/...` answers 200 and then
    trickles its body a byte every half second for a minute; `/huge/...` answers more than the
    fleet's max_body. It records how many of the fleet's connections were open at once and how
    long each request was held."""

    def __init__(self, huge: int) -> None:
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        self.peak = 0
        self.held: dict[str, float] = {}
        self.server, self.url = stand_in_server(lambda handler: self.serve(handler, huge))

    def serve(self, handler: http.server.BaseHTTPRequestHandler, huge: int) -> None:
        with self.lock:  # the fleet's connections still open, this one included
            self.open = {sock for sock in self.open if not _hung_up(sock)} | {handler.connection}
            self.peak = max(self.peak, len(self.open))
        start = time.monotonic()
        name = handler.path.split("/")[1]
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(huge if name == "huge" else 120))
            handler.end_headers()
            if name == "huge":
                handler.wfile.write(b" " * huge)
            else:
                for _ in range(120):
                    handler.wfile.write(b" ")
                    handler.wfile.flush()
                    time.sleep(0.5)
        except OSError:
            pass  # the fleet hung up
        finally:
            with self.lock:
                self.open.discard(handler.connection)
                self.held[name] = max(self.held.get(name, 0.0), time.monotonic() - start)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_pulling_is_bounded_in_time_size_and_concurrency(tmp_path: Path) -> None:
    agents = _HostileAgents(huge=1 << 20)
    names = [f"slow-{n}" for n in range(5)] + ["huge"]
    config = write_fleet_config(tmp_path / "fleet", max_body=65536, pull={
        "targets": [{"url": f"{agents.url}/{name}"} for name in names],
        "interval": "1h", "timeout": 2.0, "concurrency": 2})
    fleet = FleetServer(config)
    try:
        def failed() -> dict[str, str]:
            return {e["target"].rsplit("/", 1)[1]: e["error"] for e in fleet.events("pull.failed")}

        give_up = time.monotonic() + 60
        while set(failed()) != set(names):  # two at a time, 2 s each: about 6 s
            assert time.monotonic() < give_up, f"not every agent was given up on within 60 s: {failed()}"
            assert requests.get(f"{fleet.url}/healthz", timeout=10).status_code == 200  # the server still answers
            time.sleep(0.5)
        errors = failed()
        assert all("deadline" in errors[name] for name in names if name.startswith("slow")), errors
        assert "larger than 65536 bytes" in errors["huge"], errors
        assert agents.peak == 2, agents.peak  # pull.concurrency, with five agents holding on
        assert max(agents.held.values()) < 30  # cut at the 2 s deadline, not after the minute of trickling
        assert fleet.api("devices")["devices"] == []  # nothing from them was stored
    finally:
        fleet.stop()
        agents.stop()
