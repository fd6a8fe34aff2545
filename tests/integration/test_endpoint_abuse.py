"""The pull endpoint under abusive clients on real sockets (issue 11, item 8): clients that
trickle header lines, clients that send huge headers, many connections from one address. The
legitimate requests of another client must still succeed, and a trickling client is cut off at
the whole-request deadline however steadily it sends.

Loopback has a whole /8 on Linux, so the attackers connect from 127.0.0.2 and the legitimate
client from 127.0.0.1: two addresses, as on a real network.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator

import pytest
import requests

from agent.service import server
from agent.report.snapshot import Snapshot
from tests.service_support import TOKEN, wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ATTACKER = "127.0.0.2"


@pytest.fixture
def endpoint(monkeypatch) -> Iterator[tuple[server.Endpoint, int]]:
    monkeypatch.setattr(server, "REQUEST_DEADLINE", 2.0, raising=False)  # raising=False: also runs on main
    running = server.start("127.0.0.1:0", TOKEN, Snapshot, None)
    yield running, running.server_address[1]
    running.shutdown()
    running.server_close()


def _connect(port: int, source: str = ATTACKER) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    sock.sendall(b"GET /v1/report HTTP/1.1\r\nHost: x\r\n")
    return sock


class Tricklers:
    """Clients that each send a header line every `every` seconds, and reconnect when cut off."""

    def __init__(self, port: int, count: int, every: float = 0.5) -> None:
        self.port, self.every = port, every
        self.stop = threading.Event()
        self.cut_after: list[float] = []
        self.connections = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                sock = _connect(self.port)
            except OSError:
                time.sleep(0.05)
                continue
            began = time.monotonic()
            self.connections += 1
            try:
                number = 0
                while not self.stop.wait(self.every):
                    sock.sendall(f"X-Slow-{number}: 1\r\n".encode())
                    number += 1
            except OSError:
                self.cut_after.append(time.monotonic() - began)
            finally:
                sock.close()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def test_trickling_clients_from_one_address_do_not_deny_the_others(endpoint) -> None:
    running, port = endpoint
    attack = Tricklers(port, count=32)
    try:
        wait_until(lambda: attack.connections >= 32, timeout=30)
        time.sleep(0.5)  # let the endpoint take (or refuse) them all
        for _ in range(5):
            answer = requests.get(f"http://127.0.0.1:{port}/v1/report", headers=AUTH, timeout=10)
            assert answer.status_code == 503 and answer.text == "no scan has finished yet\n"
    finally:
        attack.close()


def test_a_trickling_client_is_cut_off_at_the_deadline(endpoint) -> None:
    _, port = endpoint
    attack = Tricklers(port, count=1, every=0.2)  # well within the 10 s per-read timeout, forever
    try:
        wait_until(lambda: attack.cut_after, timeout=30)
    finally:
        attack.close()
    assert attack.cut_after[0] < 10  # the deadline is 2 s; the per-read timeout alone never fires


def _sent_until_closed(sock: socket.socket, payload: bytes) -> tuple[int, bytes]:
    """Send `payload` in pieces until the server closes; return (bytes sent, what it answered)."""
    sent = 0
    try:
        for start in range(0, len(payload), 16 * 1024):
            sock.sendall(payload[start:start + 16 * 1024])
            sent += 16 * 1024
    except OSError:
        pass
    try:
        return sent, sock.recv(4096)
    except OSError:
        return sent, b""


def test_huge_headers_are_refused_after_the_header_budget(endpoint) -> None:
    _, port = endpoint
    sock = _connect(port)
    header = b"X-Big: " + b"a" * (64 * 1024 - 20) + b"\r\n"
    sent, answer = _sent_until_closed(sock, header * 98)
    sock.close()
    assert answer.startswith(b"HTTP/1.0 431") or answer == b""
    assert sent < 98 * len(header)  # closed long before the 6 MB were taken in
    ok = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    assert ok.status_code == 200


def test_many_headers_just_under_the_line_limit_are_refused(endpoint) -> None:
    _, port = endpoint
    sock = _connect(port)
    sock.sendall(b"".join(f"X-H{n}: {'b' * 200}\r\n".encode() for n in range(90)) + b"\r\n")
    answer = sock.recv(4096)
    sock.close()
    assert answer.startswith(b"HTTP/1.0 431")


def test_a_normal_request_with_a_token_fits_the_budget(endpoint) -> None:
    _, port = endpoint
    headers = {**AUTH, "User-Agent": "prometheus/2.45", "Accept": "*/*", "X-Forwarded-For": "10.0.0.1"}
    assert requests.get(f"http://127.0.0.1:{port}/metrics", headers=headers, timeout=10).status_code == 200


SERVE = """
import sys, time
from agent.service import server
from agent.report.snapshot import Snapshot
running = server.start("127.0.0.1:0", "t" * 32, Snapshot, None)
print(running.server_address[1], flush=True)
time.sleep(120)
"""


def _peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_memory_stays_bounded_under_a_header_flood() -> None:
    """32 clients each sending 98 headers of 64 KB took the agent to 590 MB on main."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", SERVE], stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        header = b"X-Big: " + b"a" * (64 * 1024 - 20) + b"\r\n"
        clients = [threading.Thread(target=lambda: _sent_until_closed(_connect(port), header * 98), daemon=True)
                   for _ in range(32)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(60)
        assert _peak_rss_mb(process.pid) < 120, _peak_rss_mb(process.pid)
    finally:
        process.kill()
        process.wait(10)


def test_refused_connections_do_not_flood_the_log(endpoint) -> None:
    import logging

    running, port = endpoint
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    server_logger = logging.getLogger("agent.service.server")
    server_logger.addHandler(handler)
    held = [_connect(port) for _ in range(server.MAX_PER_CLIENT)]
    try:
        wait_until(lambda: running.active() == server.MAX_PER_CLIENT, timeout=30)
        for _ in range(50):
            extra = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(ATTACKER, 0))
            extra.recv(1)  # closed by the server at once
            extra.close()
    finally:
        server_logger.removeHandler(handler)
        for sock in held:
            sock.close()
    busy = [r for r in records if r.getMessage() == "server.busy"]
    assert 1 <= len(busy) <= 5
