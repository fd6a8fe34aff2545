"""Device tokens over time, against a real `appban fleet serve` and real `appban run` agents: an
agent rotates its token on schedule (`push.rotate_token_every`); a rotation whose answer is lost
after the fleet committed it leaves the agent a working token (it proposed the new one first);
the fleet refuses a malformed or taken proposal; a refused re-enrollment is logged once, not
every cycle, while the reports stay queued."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest
import requests

from tests.fleet_support import FleetServer, cli, enroll, fleet_agent, push, report, stand_in_server, write_fleet_config
from tests.service_support import Daemon, wait_until

pytestmark = pytest.mark.slow

FAST = {"scan": "1s", "push": "1s", "splay": "1s"}


def _delivered(fleet: FleetServer, agent: Daemon, device: str) -> bool:
    """Whether the fleet holds one of the agent's latest reports (it is still delivering)."""
    done = [e["report"] for e in agent.events("scan.done")]
    return fleet.api(f"devices/{device}")["device"]["last_report"] in done[-3:]


def test_an_agent_rotates_its_token_on_schedule(tmp_path: Path) -> None:
    fleet = FleetServer(write_fleet_config(tmp_path / "fleet"))
    state = tmp_path / "agent" / "state"
    agent = fleet_agent(tmp_path / "agent", fleet, "desk-r", ["staff"], tmp_path / "fleet" / "enroll-secret",
                        push={"rotate_token_every": "3s"}, schedule=FAST)
    try:
        wait_until(lambda: (state / "fleet-token").exists(), timeout=60)
        first = (state / "fleet-token").read_text().strip()
        wait_until(lambda: len(agent.events("push.token_rotated")) >= 2, timeout=60)
        current = (state / "fleet-token").read_text().strip()
        assert current != first and (state / "fleet-token").stat().st_mode & 0o777 == 0o600
        assert push(fleet, first, report("desk-r", "stolen-1", "bash")).status_code == 401  # the old one is dead
        history = [e["event"] for e in fleet.api("devices/desk-r")["enrollment"]]
        assert history[0] == "enrolled" and history.count("rotated") >= 2 and set(history) == {"enrolled", "rotated"}
        wait_until(lambda: _delivered(fleet, agent, "desk-r"), timeout=60)
        assert not agent.events("push.enroll_failed") and not agent.events("push.dead_lettered")
    finally:
        agent.stop()
        fleet.stop()


class _LossyProxy:
    """Forwards the agent's requests to the fleet; while `lose_rotations` is set, a rotation
    (`/v1/enroll` with a bearer token) reaches the fleet and is committed, but its answer is never
    sent back: the connection is closed instead, as when the agent's link or the agent dies."""

    def __init__(self, upstream: str) -> None:
        self.lose_rotations = threading.Event()
        self.lost = 0
        self.server, self.url = stand_in_server(lambda handler: self.forward(handler, upstream))

    def forward(self, handler: http.server.BaseHTTPRequestHandler, upstream: str) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "content-length")}
        answer = requests.post(upstream + handler.path, data=body, headers=headers, timeout=30)
        if handler.path == "/v1/enroll" and "authorization" in {k.lower() for k in headers} \
                and self.lose_rotations.is_set() and answer.status_code == 200:
            self.lost += 1
            handler.close_connection = True  # committed by the fleet, never answered
            return
        handler.send_response(answer.status_code)
        handler.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
        handler.send_header("Content-Length", str(len(answer.content)))
        handler.end_headers()
        handler.wfile.write(answer.content)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_rotation_whose_answer_is_lost_leaves_a_working_token(tmp_path: Path) -> None:
    fleet = FleetServer(write_fleet_config(tmp_path / "fleet"))
    proxy = _LossyProxy(fleet.url)
    state = tmp_path / "agent" / "state"
    agent = fleet_agent(tmp_path / "agent", fleet, "desk-l", ["staff"], tmp_path / "fleet" / "enroll-secret",
                        push={"url": proxy.url, "rotate_token_every": "2s"}, schedule=FAST)
    try:
        wait_until(lambda: agent.events("push.enrolled"), timeout=60)
        proxy.lose_rotations.set()
        wait_until(lambda: proxy.lost >= 2 and len(agent.events("push.token_recovered")) >= 2, timeout=90)
        proxy.lose_rotations.clear()
        wait_until(lambda: agent.events("push.token_rotated"), timeout=60)  # and an answered one works too
        wait_until(lambda: _delivered(fleet, agent, "desk-l"), timeout=60)
        # The fleet took each lost proposal; the agent kept pushing without enrolling again.
        history = [e["event"] for e in fleet.api("devices/desk-l")["enrollment"]]
        assert history.count("rotated") >= 3 and "reenrolled" not in history
        assert not agent.events("push.enroll_failed")
        assert agent.events("push.rotate_failed")  # it saw each loss (logged once: the same error)
        assert push(fleet, (state / "fleet-token").read_text().strip(),
                    report("desk-l", "by-hand-1", "bash")).status_code == 200
    finally:
        agent.stop()
        proxy.stop()
        fleet.stop()


def test_proposed_tokens_are_checked(tmp_path: Path) -> None:
    fleet = FleetServer(write_fleet_config(tmp_path / "fleet"))
    try:
        mine = "p" * 40
        assert enroll(fleet, "desk-p", proposed="short").status_code == 422
        assert enroll(fleet, "desk-p", proposed="x" * 40 + "!").status_code == 422
        assert enroll(fleet, "desk-p", proposed=["p" * 40]).status_code == 422
        granted = enroll(fleet, "desk-p", proposed=mine)
        assert granted.status_code == 200 and granted.json()["token"] == mine
        assert push(fleet, mine, report("desk-p", "p1", "bash")).status_code == 200
        # Another device cannot take desk-p's token by proposing it, and is told nothing else.
        taken = enroll(fleet, "desk-q", proposed=mine)
        assert taken.status_code == 409 and "in use" in taken.json()["error"]
        assert fleet.api("devices/desk-p")["enrollment"][-1]["event"] == "enrolled"
        assert fleet.get("/api/v1/devices/desk-q").status_code == 404
        assert push(fleet, mine, report("desk-p", "p2", "bash")).status_code == 200
    finally:
        fleet.stop()


def test_a_refused_reenrollment_is_logged_once_and_reports_stay_queued(tmp_path: Path) -> None:
    config = write_fleet_config(tmp_path / "fleet")
    fleet = FleetServer(config)
    secret = tmp_path / "fleet" / "enroll-secret"
    agent = fleet_agent(tmp_path / "agent", fleet, "desk-9", ["staff"], secret, schedule=FAST)
    try:
        wait_until(lambda: agent.events("push.enrolled"), timeout=60)
        agent.stop()
        shutil.rmtree(tmp_path / "agent" / "state")  # reinstalled: the token is gone
        agent = fleet_agent(tmp_path / "agent", fleet, "desk-9", ["staff"], secret, schedule=FAST)

        def refusals() -> int:
            return len([e for e in fleet.events("ingest.refused") if e["path"] == "/v1/enroll" and e["status"] == 409])

        wait_until(lambda: refusals() >= 5, timeout=60)  # the agent kept asking, once per cycle
        failed = agent.events("push.enroll_failed")
        assert len(failed) == 1 and "appban fleet reenroll desk-9" in failed[0]["error"], failed
        assert "repeated" not in failed[0]
        assert not agent.events("push.failed")  # it never tried to push with a token the fleet refused to make
        status = cli("status", "--config", str(tmp_path / "agent" / "agent.yaml"), "--format", "json")
        assert json.loads(status.stdout)["queue_depth"] > 0, status.stdout  # nothing dropped meanwhile
        allowed = cli("fleet", "reenroll", "desk-9", "--config", str(config))
        assert allowed.returncode == 0, allowed.stderr
        wait_until(lambda: agent.events("push.enrolled"), timeout=60)
        wait_until(lambda: _delivered(fleet, agent, "desk-9"), timeout=60)
        assert len(agent.events("push.enroll_failed")) == 1
    finally:
        agent.stop()
        fleet.stop()
