"""Real parts for the service tests: an HTTPS push receiver on 127.0.0.1 that counts deliveries
per report id, and helpers to run `appban run` as a subprocess on a temporary tree (the test PKI
comes from tests/banlist_servers.py)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from tests.banlist_servers import Pki, free_port

APPBAN = str(Path(sys.executable).with_name("appban"))
TOKEN = "pull-token-0123456789"
PUSH_TOKEN = "push-token-9876543210"
BANLIST = """\
format: appban.banlist/v1
serial: 7
issued: 2026-11-01T00:00:00Z
entries:
  - id: tiktok
    name: TikTok
    match: {deb: [tiktok-desktop]}
  - id: wechat
    name: WeChat
    advisory_for: [staff]
    applies_to: [ministers]
    match: {deb: [wechat]}
"""
BLOCKING_LIST = """\
format: appban.banlist/v1
serial: 1
issued: 2026-01-01T00:00:00Z
entries:
  - id: wechat
    name: WeChat
    action: block
    match:
      executables: [{exe}]
      sha256: [{digests}]
"""
"""A list that blocks one program by name (and by the given hashes); format with exe and digests."""
DPKG_STATUS = """\
Package: tiktok-desktop
Status: install ok installed
Version: 1.0
Architecture: amd64
Maintainer: Example <tiktok@example.com>

Package: wechat
Status: install ok installed
Version: 3.9
Architecture: amd64
Maintainer: Example <wechat@example.com>

Package: bash
Status: install ok installed
Version: 5.2.15-2+b2
Architecture: amd64
Maintainer: Matthias Klose <doko@debian.org>
"""


def direct_env() -> dict[str, str]:
    """Return this environment minus any proxy, so the agent talks to 127.0.0.1 directly."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, step: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy and return its value; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout}s")


@dataclass
class Receiver:
    """A push receiver: HTTPS with a required client certificate and bearer token on 127.0.0.1.

    It records every accepted POST (Idempotency-Key and the body's report id) and answers
    `status` (200 by default); `start()` may be called after the agent began trying, so the
    receiver is "down" (nothing listening on its port) until then.
    """

    pki: Pki
    port: int = field(default_factory=free_port)
    status: int = 200
    deliveries: list[tuple[str, str]] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    """Per report id, a status to answer instead of `status` (e.g. 422 for one poisoned report)."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra headers on every answer that is not a 200 (Retry-After, Location)."""
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/v1/reports"

    def counts(self) -> Counter[str]:
        """Return how many times each report id was accepted."""
        return Counter(report_id for _, report_id in self.deliveries)

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                key = self.headers.get("Idempotency-Key", "")
                status = receiver.answers.get(key, receiver.status)
                if self.headers.get("Authorization") != f"Bearer {PUSH_TOKEN}":
                    self.send_response(401)
                elif self.headers.get("Content-Type") != "application/json":
                    self.send_response(415)  # as a receiver that parses only JSON would
                elif status == 200:
                    report = json.loads(body)
                    receiver.deliveries.append((key, report["id"]))
                    self.send_response(200)
                else:
                    self.send_response(status)
                    for name, value in receiver.headers.items():
                        self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        context.load_verify_locations(self.pki.ca)
        context.verify_mode = ssl.CERT_REQUIRED
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def banned_program(folder: Path) -> Path:
    """Return a copy of `sleep` in `folder` under a unique name that BLOCKING_LIST can ban. Unique
    per run, not per folder name: a guard in a concurrent run of the suite kills what it names."""
    exe = folder / f"wechat-appban-{uuid.uuid4().hex[:12]}"
    shutil.copy(shutil.which("sleep"), exe)
    return exe


def make_tree(folder: Path) -> Path:
    """Create a system tree with a dpkg database (two listed apps, one not) and return its root."""
    status = folder / "root" / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    status.write_text(DPKG_STATUS)
    return folder / "root"


def write_config(folder: Path, **sections: Any) -> Path:
    """Write an agent config for the test tree (ban list, state dir, token files) and return its path.

    `sections` override or add top-level keys (e.g. server=..., push=..., schedule=...).
    """
    (folder / "banlist.yaml").write_text(BANLIST)
    (folder / "token").write_text(TOKEN + "\n")
    (folder / "push-token").write_text(PUSH_TOKEN + "\n")
    root = folder / "root" if (folder / "root").exists() else make_tree(folder)
    config: dict[str, Any] = {
        "state_dir": str(folder / "state"),
        "device": {"id": "test-host", "groups": ["staff"]},
        "banlist": {"path": str(folder / "banlist.yaml")},
        "inventory": {"root": str(root), "sources": ["dpkg"]},
        "schedule": {"scan": "1h", "push": "1s", "splay": "1s"},
        "logging": {"format": "json", "level": "info"},
    }
    config.update(sections)
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Daemon:
    """`appban run` as a subprocess, its JSON log lines collected from stderr."""

    def __init__(self, config: Path, *extra: str) -> None:
        self.log_path = config.with_name(f"daemon-{time.monotonic_ns()}.log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([APPBAN, "run", "--config", str(config), *extra],
                                        stdout=subprocess.DEVNULL, stderr=self._log, env=direct_env())

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Return the log events so far (those named `name`, if given)."""
        events = []
        for line in self.log_path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                events.append(event)
        return events

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def wait(self, timeout: float = 60.0) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Make sure the process is gone (SIGKILL if it is still running) and close the log; under
        pytest, print the log, which pytest shows only when the test failed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self._log.close()
        if os.environ.get("PYTEST_CURRENT_TEST"):
            print(f"--- appban run log ({self.log_path}) ---\n{self.log_path.read_text()}")
