"""The pull endpoint on real sockets: TLS, bodies refused, idle clients timed out, connections
bounded, and a client that never finishes its TLS handshake cannot stall the others."""

from __future__ import annotations

import socket
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests

from agent.service import server
from agent.report.snapshot import Snapshot
from tests.banlist_servers import make_pki
from tests.service_support import TOKEN, wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def short_timeouts(monkeypatch):
    """Seconds instead of the real limits; not less, or a loaded machine's own client misses them."""
    monkeypatch.setattr(server, "REQUEST_TIMEOUT", 2.0)
    monkeypatch.setattr(server._Handler, "timeout", 2.0)


@pytest.fixture
def plain(short_timeouts):
    endpoint = server.start("127.0.0.1:0", TOKEN, Snapshot, None)
    yield endpoint, f"http://127.0.0.1:{endpoint.server_address[1]}"
    endpoint.shutdown()
    endpoint.server_close()


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closes `sock`. The generous wait only matters on a loaded machine:
    every caller expects the close well within the server's own timeout."""
    sock.settimeout(20.0)
    return sock.recv(1) == b""


def test_routes_and_refusals(plain) -> None:
    _, base = plain
    assert requests.get(base + "/healthz", timeout=5).text == "ok\n"
    assert requests.get(base + "/v1/report", headers=AUTH, timeout=5).status_code == 503
    assert requests.get(base + "/v1/report", headers={"Authorization": "Basic " + TOKEN}, timeout=5).status_code == 401
    metrics = requests.get(base + "/metrics", headers=AUTH, timeout=5)
    assert metrics.status_code == 200 and "appban_push_queue_depth 0.0" in metrics.text
    assert requests.get(base + "/v1/report", headers=AUTH, data=b"x" * 10, timeout=5).status_code == 413
    put = requests.put(base + "/metrics", headers=AUTH, timeout=5)
    assert put.status_code == 405 and put.headers["Allow"] == "GET, HEAD"


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send one raw request and return every byte the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_head_answers_like_get_without_a_body_and_the_server_header_is_clean(plain) -> None:
    endpoint, base = plain
    port = endpoint.server_address[1]
    get = requests.get(base + "/metrics", headers=AUTH, timeout=5)
    head = raw_exchange(port, f"HEAD /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    status, _, rest = head.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    fields = dict(line.split(b": ", 1) for line in headers.split(b"\r\n"))
    assert status.endswith(b" 200 OK") and body == b""
    assert int(fields[b"Content-Length"]) == len(get.content)
    assert fields[b"Content-Type"].decode() == get.headers["Content-Type"]
    assert fields[b"Server"] == b"appban" and get.headers["Server"] == "appban"
    unauthorized = raw_exchange(port, b"HEAD /v1/report HTTP/1.1\r\nHost: x\r\n\r\n")
    assert unauthorized.split(b" ")[1] == b"401" and unauthorized.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"BREW /healthz HTTP/1.1\r\n\r\n", b"501"),
    (b"GET /healthz HTTP/2.0\r\n\r\n", b"505"),
    (b"GET /healthz\r\n\r\n", b"400"),
    (b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", b"400"),
    (b"GET /healthz HTTP/1.1\nHost: x\n\n", b"200"),  # bare LF line ends are read
])
def test_requests_outside_the_grammar_are_answered_and_closed(plain, request_bytes: bytes, status: bytes) -> None:
    endpoint, _ = plain
    answer = raw_exchange(endpoint.server_address[1], request_bytes)
    assert answer.startswith(b"HTTP/1.0 " + status + b" ")
    headers = dict(line.split(b": ", 1) for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:])
    sent = parsedate_to_datetime(headers[b"Date"].decode())  # RFC 9110 5.6.7, in GMT
    assert sent.tzinfo is not None and abs(sent.timestamp() - time.time()) < 60


@pytest.fixture
def two_slots(monkeypatch):
    """An endpoint bounded to two connections. Only for the test of the bound: elsewhere the
    threads of requests just answered may still hold their slots when the next one connects."""
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 2)


def test_idle_client_is_disconnected_and_connections_are_bounded(two_slots, plain, monkeypatch) -> None:
    endpoint, base = plain
    port = endpoint.server_address[1]
    assert endpoint.active() == 0
    # While the slots are filled, idle connections are held for a minute: with the 0.5 s timeout
    # a loaded machine could free a slot before the test sees both taken, or before the extra
    # connection arrives (and a close of that one would then prove nothing about the bound).
    monkeypatch.setattr(server, "REQUEST_TIMEOUT", 60.0)
    monkeypatch.setattr(server._Handler, "timeout", 60.0)
    monkeypatch.setattr(server, "REQUEST_DEADLINE", 60.0)
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    wait_until(lambda: endpoint.active() == 2)
    extra = socket.create_connection(("127.0.0.1", port))
    assert closed_by_server(extra)  # dropped at once: within 20 s, the held ones wait 60 s
    for sock in [*held, extra]:
        sock.close()
    wait_until(lambda: endpoint.active() == 0)

    monkeypatch.setattr(server, "REQUEST_TIMEOUT", 0.5)
    monkeypatch.setattr(server._Handler, "timeout", 0.5)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    assert all(closed_by_server(sock) for sock in idle)  # an idle client is disconnected
    wait_until(lambda: requests.get(base + "/healthz", timeout=5).status_code == 200)
    for sock in idle:
        sock.close()


def test_tls_endpoint_and_a_stalled_handshake(short_timeouts, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    endpoint = server.start("127.0.0.1:0", TOKEN, Snapshot, server.tls_context(str(pki.server_cert), str(pki.server_key)))
    port = endpoint.server_address[1]
    try:
        stalled = socket.create_connection(("127.0.0.1", port))
        response = requests.get(f"https://127.0.0.1:{port}/healthz", verify=str(pki.ca), timeout=5)
        assert response.status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://127.0.0.1:{port}/healthz", timeout=5)
        assert closed_by_server(stalled)
        stalled.close()
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        endpoint.shutdown()
        endpoint.server_close()


@pytest.mark.parametrize("offered", [
    TOKEN[:-1], TOKEN[:1], "", TOKEN + "x", TOKEN.upper(), " " + TOKEN[:-1], TOKEN[1:], TOKEN + TOKEN,
])
def test_only_the_exact_token_is_accepted(plain, offered: str) -> None:
    """A prefix, a suffix, an extension or a case change of the token is refused (a mutant that
    accepted a prefix of the configured token passed the whole suite before, issue 11)."""
    _, base = plain
    assert requests.get(base + "/v1/report", headers={"Authorization": f"Bearer {offered}"}, timeout=5).status_code == 401
    assert requests.get(base + "/v1/report", headers={"Authorization": f"bearer {TOKEN}"}, timeout=5).status_code == 503


def test_the_scheme_may_be_followed_by_several_spaces(plain) -> None:
    """RFC 9110 11.4 allows `1*SP` between the scheme and the credentials."""
    _, base = plain
    assert requests.get(base + "/v1/report", headers={"Authorization": f"Bearer   {TOKEN}"}, timeout=5).status_code == 503
