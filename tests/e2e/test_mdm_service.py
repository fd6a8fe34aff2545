"""`appban run` with an MDM connector as its source: the service's scheduled scan reads the
Jamf stand-in, and its pull endpoint serves each phone as its own device with its ownership."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.banlist_servers import free_port
from tests.mdm_servers import JamfApp, StandIn, jamf_device
from tests.service_support import TOKEN, Daemon, wait_until, write_config


def _report(base: str) -> dict | None:
    request = urllib.request.Request(base + "/v1/report", headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


def test_the_service_scans_the_mdm_and_serves_each_phone_as_its_own_device(tmp_path: Path) -> None:
    server = StandIn(JamfApp([jamf_device(1), jamf_device(2, "UserEnrollment")], "reader", "pw"))
    (tmp_path / "jamf.secret").write_text("pw")
    port = free_port()
    config = write_config(
        tmp_path, server={"listen": f"127.0.0.1:{port}", "token_file": str(tmp_path / "token")},
        inventory={"root": "/", "sources": ["jamf"]},
        mdm={"jamf": {"url": server.url, "client_id": "reader", "secret_file": str(tmp_path / "jamf.secret")}},
    )
    daemon = Daemon(config)
    try:
        report = wait_until(lambda: _report(f"http://127.0.0.1:{port}"))
    finally:
        daemon.stop()
        server.stop()
    phones = {d["id"]: d for d in report["devices"] if d["kind"] == "ios"}
    assert {i: (d["ownership"], d["attributes"]["mdm"]) for i, d in phones.items()} == {
        "1": ("corporate", "jamf"), "2": ("personal", "jamf")}
    assert report["errors"] == [] and len(server.requests("/api/v2/mobile-devices/detail")) >= 1
