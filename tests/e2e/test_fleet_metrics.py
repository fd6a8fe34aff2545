"""The fleet's /metrics scraped by a real Prometheus with the metrics token (bounded labels, no
per-device label), and the example alerting rules accepted by the real `promtool check rules`."""

from __future__ import annotations

import subprocess
import urllib.parse
from pathlib import Path

import pytest
import requests

from tests.banlist_servers import free_port
from tests.conftest import REPO, require_tool
from tests.e2e.test_fleet_web import PHONE_LIST
from tests.fleet_support import ADMIN_TOKEN, METRICS_TOKEN, FleetServer, cli, write_fleet_config
from tests.service_support import wait_until

pytestmark = pytest.mark.slow
MDM = REPO / "tests" / "fixtures" / "mdm"
GROUP = 'staff "on call" \\ é\nnight'
"""A group name as an agent may send one: the label value must be escaped for Prometheus."""


def test_promtool_accepts_the_example_alerts() -> None:
    done = subprocess.run([require_tool("promtool"), "check", "rules", str(REPO / "config" / "fleet-alerts.example.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout


def test_prometheus_scrapes_the_fleet_with_the_metrics_token(tmp_path: Path) -> None:
    prometheus_path = require_tool("prometheus")
    folder = tmp_path / "fleet"
    config = write_fleet_config(folder, banlist=PHONE_LIST, metrics_token_file=str(folder / "metrics-token"),
                                default_groups=[GROUP])
    assert cli("fleet", "import", str(MDM / "intune-appinvrawdata.csv"), "--config", str(config)).returncode == 0
    fleet = FleetServer(config)
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(f"""\
global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: appban-fleet
    authorization: {{credentials_file: {folder / 'metrics-token'}}}
    static_configs: [{{targets: ["{fleet.url.removeprefix('http://')}"]}}]
""")
    prometheus = subprocess.Popen(
        [prometheus_path, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def series(expr: str) -> list:
        try:
            answer = requests.get(f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr}),
                                  timeout=5)
        except requests.RequestException:
            return []
        return answer.json()["data"]["result"] if answer.status_code == 200 else []

    try:
        assert fleet.get("/metrics", token=ADMIN_TOKEN).status_code == 401  # metrics_token_file set: only it
        assert fleet.get("/metrics", token=METRICS_TOKEN).status_code == 200
        devices = wait_until(lambda: series("appban_fleet_devices"), timeout=60, step=0.5)
        assert {(s["metric"]["kind"], s["metric"]["state"], s["value"][1]) for s in devices} == {
            ("ios", "noncompliant", "1"), ("android", "noncompliant", "2")}
        entry = wait_until(lambda: series('appban_fleet_noncompliant_devices{entry="tiktok"}'), timeout=30)
        assert entry[0]["value"][1] == "3"
        names = {s["metric"]["__name__"] for s in series('{job="appban-fleet"}')}
        assert {"appban_fleet_stale_devices", "appban_fleet_drift_devices", "appban_fleet_banlist_serial",
                "appban_fleet_ingested_reports_total", "appban_fleet_oldest_violation_age_seconds"} <= names
        groups = series("appban_fleet_noncompliant_devices_by_group")
        assert [(s["metric"]["group"], s["value"][1]) for s in groups] == [(GROUP, "3")]
        labels = {k for s in series('{job="appban-fleet"}') for k in s["metric"]}
        assert labels <= {"__name__", "job", "instance", "kind", "state", "entry", "group", "serial", "outcome", "status"}
        targets = requests.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
        assert targets["data"]["activeTargets"][0]["health"] == "up"
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        fleet.stop()
