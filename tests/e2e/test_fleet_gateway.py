"""A gateway agent pushing its phones to the fleet: a real `appban run` with gateway mode on reads
two Android phones through the stand-in `adb` of tests/phones.py (recorded real adb output) and
pushes them with its own token; the fleet stores each phone as its own device, reported by the
gateway, because the fleet administrator granted it — and refuses every device outside the grant."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.fleet_support import FleetServer, control, enroll, fleet_agent, push, report, write_fleet_config
from tests.phones import PIXEL2, SAMSUNG, android_replies, install
from tests.service_support import BANLIST, wait_until

pytestmark = pytest.mark.slow

PHONE_LIST = BANLIST + "  - id: tiktok-android\n    name: TikTok\n    match: {android: [com.zhiliaoapp.musically]}\n"
GRANTS = [{"gateway": "lab-gw-*", "kinds": ["android"], "ids": ["R58*", "0123*"]},
          {"gateway": "mdm-relay", "kinds": ["ios"]}]


def test_a_granted_gateway_pushes_its_phones_and_nothing_else(tmp_path: Path) -> None:
    config = write_fleet_config(tmp_path / "fleet", banlist=PHONE_LIST, gateways=GRANTS)
    fleet = FleetServer(config)
    adb = install(tmp_path, "adb", android_replies(stuck_for=30), tmp_path / "calls.log")
    gateway = fleet_agent(tmp_path / "gw", fleet, "lab-gw-1", ["staff"], tmp_path / "fleet" / "enroll-secret",
                          schedule={"scan": "2s", "push": "1s", "splay": "1s"}, commands={"adb": adb},
                          gateway={"enabled": True, "timeout": 1.0, "default_groups": ["staff"]},
                          inventory={"root": "/", "sources": ["android"]})  # phones: the running system
    try:
        wait_until(lambda: len(fleet.api("devices")["devices"]) == 3, timeout=120)
        devices = {d["id"]: d for d in fleet.api("devices")["devices"]}
        assert {d: (devices[d]["kind"], devices[d]["reported_by"]) for d in devices} == {
            "lab-gw-1": ("host", None), SAMSUNG: ("android", "lab-gw-1"), PIXEL2: ("android", "lab-gw-1")}
        tiktok = fleet.api("findings", entry="tiktok-android")["findings"]
        assert {f["device"] for f in tiktok} == {SAMSUNG, PIXEL2}  # judged centrally, each phone its own device
        page = fleet.get(f"/devices/{SAMSUNG}")
        assert page.status_code == 200 and 'reported by gateway <a href="/devices/lab-gw-1">' in page.text
        seen = fleet.api(f"devices/{SAMSUNG}")["device"]["last_seen"]
        wait_until(lambda: fleet.api(f"devices/{SAMSUNG}")["device"]["last_seen"] > seen, timeout=60)  # re-pushes too

        # Outside the grant: a host that is no gateway, a kind or an id not granted, an enrolled device.
        desk = enroll(fleet, "desk-1").json()["token"]
        lab = enroll(fleet, "lab-gw-2").json()["token"]
        iphone = {"id": "00008101-000A1B2C3D4E001E", "kind": "ios"}
        cases = [
            ("not a gateway", desk, report("desk-1", "x1", phones=({"id": SAMSUNG, "kind": "android"},))),
            ("kind not granted", lab, report("lab-gw-2", "x2", phones=(iphone,))),
            ("id not granted", lab, report("lab-gw-2", "x3", phones=({"id": "HT7A1B234567", "kind": "android"},))),
            ("a host is never granted", lab, report("lab-gw-2", "x4", phones=({"id": "R58-host", "kind": "host"},))),
            ("an enrolled device", lab, report("lab-gw-2", "x5", phones=({"id": "R58-own", "kind": "android"},))),
        ]
        enroll(fleet, "R58-own")
        for case, token, document in cases:
            answer = push(fleet, token, document)
            assert (case, answer.status_code) == (case, 403), answer.text
            assert "\n" not in answer.json()["error"]
        assert push(fleet, lab, report("lab-gw-2", "ok", phones=({"id": "R58-spare", "kind": "android"},))).ok
        assert fleet.api("devices/R58-spare")["device"]["reported_by"] == "lab-gw-2"
        # The phone gets an agent of its own (with the administrator's leave: the fleet knows it).
        assert enroll(fleet, "R58-spare").status_code == 409 and control(fleet, "R58-spare", "reenroll").ok
        assert enroll(fleet, "R58-spare").ok and fleet.api("devices/R58-spare")["device"]["reported_by"] is None
        assert push(fleet, lab, report("lab-gw-2", "x6", phones=({"id": "R58-spare", "kind": "android"},))).status_code == 403
        assert {d["id"] for d in fleet.api("devices")["devices"]} == {
            "lab-gw-1", SAMSUNG, PIXEL2, "lab-gw-2", "R58-spare"}
        assert requests.get(f"{fleet.url}/healthz", timeout=10).ok
    finally:
        gateway.stop()
        fleet.stop()
