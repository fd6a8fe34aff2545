"""Real parts for the fleet tests: `appban fleet serve` as a subprocess on a free 127.0.0.1 port
(uvicorn, SQLite in a temp state dir or the test PostgreSQL), with helpers to call its API as the
admin and to point real `appban run` agents at it."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import requests
import yaml

from tests.banlist_servers import free_port
from tests.service_support import APPBAN, BANLIST, Daemon, direct_env, wait_until, write_config

ADMIN_TOKEN = "fleet-admin-token-0123456789abcdef"
METRICS_TOKEN = "fleet-metrics-token-0123456789"
ENROLL_SECRET = "fleet-enroll-secret-0123456789abcdef"


def write_fleet_config(folder: Path, database: str = "", banlist: str = BANLIST, **overrides: Any) -> Path:
    """Write a fleet config (ban list: tests.service_support.BANLIST, serial 7, unless given) and
    its secret files; `overrides` replace top-level keys."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "admin-token").write_text(ADMIN_TOKEN + "\n")
    (folder / "metrics-token").write_text(METRICS_TOKEN + "\n")
    (folder / "enroll-secret").write_text(ENROLL_SECRET + "\n")
    (folder / "fleet-banlist.yaml").write_text(banlist)
    config: dict[str, Any] = {
        "state_dir": str(folder / "fleet-state"),
        "listen": f"127.0.0.1:{free_port()}",
        "database": database,
        "admin_token_file": str(folder / "admin-token"),
        "enroll_secret_file": str(folder / "enroll-secret"),
        "banlist": {"path": str(folder / "fleet-banlist.yaml")},
        "groups": [{"groups": ["ministers"], "names": ["minister-*"]}],
        "logging": {"format": "json", "level": "info"},
    }
    config.update(overrides)
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class FleetServer:
    """`appban fleet serve` as a subprocess; JSON log lines collected from stderr."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        """`env` adds to the server's environment (PYTHONPATH for tests.without_httptools, say)."""
        self.config = config
        self.env = {**direct_env(), **(env or {})}
        settings = yaml.safe_load(config.read_text())
        self.url = f"{'https' if settings.get('tls_cert') else 'http'}://{settings['listen']}"
        self.tls: dict[str, Any] = {}
        if settings.get("tls_cert"):  # the test PKI's CA and client certificate (tests/banlist_servers.py)
            folder = Path(settings["tls_cert"]).parent
            self.tls = {"verify": str(folder / "ca.pem"), "cert": (str(folder / "client.pem"), str(folder / "client.key"))}
        self.log_path = config.with_name(f"fleet-{time.monotonic_ns()}.log")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        self.process = subprocess.Popen([APPBAN, "fleet", "serve", "--config", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=log, env=self.env)
        log.close()
        wait_until(self._healthy, timeout=60)

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"fleet serve exited {self.process.returncode}:\n{self.log_path.read_text()}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=2, **self.tls).status_code == 200
        except requests.RequestException:
            return False

    def get(self, path: str, token: str = ADMIN_TOKEN, **params: Any) -> requests.Response:
        return requests.get(f"{self.url}{path}", params=params, timeout=30, **self.tls,
                            headers={"Authorization": f"Bearer {token}"} if token else {})

    def api(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.get(f"/api/v1/{path}", **params)
        assert response.status_code == 200, response.text
        return response.json()

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == name:
                found.append(event)
        return found

    def kill(self) -> None:
        """SIGKILL the server (the crash case) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(20)

    def stop(self) -> int:
        """SIGTERM and wait; return the exit code. Under pytest the log is printed (shown on failure)."""
        code = 0
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
                code = -9
        if os.environ.get("PYTEST_CURRENT_TEST") and self.log_path.exists():
            print(f"--- fleet serve log ({self.log_path}) ---\n{self.log_path.read_text()[-20000:]}")
        return code


def fleet_agent(folder: Path, fleet: FleetServer, device: str, groups: list[str], secret_file: Path,
                push: dict[str, Any] | None = None, **sections: Any) -> Daemon:
    """Start a real `appban run` in `folder` that enrolls with the fleet and pushes to it (`push`
    adds to or replaces keys of its push block)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder, device={"id": device, "groups": groups},
                          push={"url": fleet.url, "enroll_secret_file": str(secret_file), "timeout": 10.0,
                                **(push or {})}, **sections)
    return Daemon(config)


def pulled_agent(folder: Path, device: str) -> tuple[Daemon, dict[str, str]]:
    """Start a real `appban run` serving its pull endpoint on a free port; return it and its
    pull target ({url, token_file}) for a fleet config."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    daemon = Daemon(write_config(folder, device={"id": device, "groups": ["staff"]},
                                 server={"listen": f"127.0.0.1:{port}", "token_file": str(folder / "token")}))
    return daemon, {"url": f"http://127.0.0.1:{port}", "token_file": str(folder / "token")}


def enroll(fleet: FleetServer, device: str, token: str = "", proposed: object = None) -> requests.Response:
    """POST /v1/enroll with the enroll secret (and, for a rotation, the current token; with
    `proposed`, the token the caller proposes)."""
    body = {"secret": ENROLL_SECRET, "device": device, **({} if proposed is None else {"token": proposed})}
    return requests.post(f"{fleet.url}/v1/enroll", json=body, timeout=30,
                         headers={"Authorization": f"Bearer {token}"} if token else {})


def report(device: str, report_id: str, *apps: str, phones: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """An appban.report/v1 document with its inventory, as `appban run` pushes it."""
    phone_apps = [{"source": "android", "id": "com.zhiliaoapp.musically", "device": p["id"]} for p in phones]
    return {"format": "appban.report/v1", "id": report_id, "agent": {"version": "1"}, "banlist": {"serial": 7},
            "devices": [{"id": device, "groups": ["staff"]}, *phones], "findings": [],
            "inventory": {"format": "appban.inventory/v1", "devices": [{"id": device}, *phones],
                          "apps": [{"source": "dpkg", "id": a, "device": device} for a in apps] + phone_apps}}


def push(fleet: FleetServer, token: str, document: dict[str, Any]) -> requests.Response:
    return requests.post(f"{fleet.url}/v1/reports", json=document, timeout=30,
                         headers={"Authorization": f"Bearer {token}", "Idempotency-Key": document["id"]})


def control(fleet: FleetServer, device: str, action: str, token: str = ADMIN_TOKEN) -> requests.Response:
    return requests.post(f"{fleet.url}/api/v1/devices/{device}/{action}", json={}, timeout=30,
                         headers={"Authorization": f"Bearer {token}"})


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `appban ARGS` as a real process."""
    return subprocess.run([APPBAN, *args], capture_output=True, text=True, timeout=timeout, env=direct_env())


def stand_in_server(handle: Callable[[http.server.BaseHTTPRequestHandler], None]) -> tuple[http.server.HTTPServer, str]:
    """Start a threaded HTTP/1.1 server on a free 127.0.0.1 port that answers every GET and POST
    with `handle(handler)` (a misbehaving agent, a lossy link); return it and its URL. Stop it
    with shutdown() and server_close()."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            handle(self)

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
