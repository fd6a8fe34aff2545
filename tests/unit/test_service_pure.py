"""Pure parts of the service: metric rendering from a snapshot, the listen address, install plans."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest

from agent.banlist.parse import parse_banlist
from agent.commands.service import checkout_venv, exec_start, plan, systemd_quote
from agent.model import App, BanListInfo, CollectorError, Device, Inventory
from agent.scan import build_report
from agent.report.metrics import SnapshotCollector, families
from agent.service.server import ListenError, parse_listen
from agent.report.snapshot import Snapshot

NOW = datetime(2026, 11, 20, tzinfo=timezone.utc)
BANLIST = parse_banlist(b"""
format: appban.banlist/v1
serial: 12
issued: 2026-11-10T00:00:00Z
expires: 2026-11-15T00:00:00Z
entries:
  - {id: tiktok, name: TikTok, match: {deb: [tiktok]}}
  - {id: wechat, name: WeChat, applies_to: [ministers], advisory_for: [staff], match: {names: ["WeChat*"]}}
""", "test list")


def snapshot() -> Snapshot:
    inventory = Inventory(
        devices=(Device(id="host", groups=("staff",)),),
        apps=(App("dpkg", "tiktok", device="host"), App("desktop", "wechat.desktop", name="WeChat", device="host"),
              App("dpkg", "bash", device="host")),
        errors=(CollectorError("process", "permission denied"),),
    )
    info = BanListInfo(12, "test", signed=True, stale=True, stale_since=BANLIST.expires)
    report = build_report(BANLIST, info, inventory, NOW, timedelta(days=90))
    return Snapshot(report=report, banlist_issued=BANLIST.issued, last_scan=1000.0, scan_duration=0.25,
                    queue_depth=4, dropped=1, dead_lettered=2)


def samples(snap: Snapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families(snap, NOW) for s in f.samples}


def test_metrics_from_a_report() -> None:
    values = samples(snapshot())
    assert values[("appban_findings", (("entry", "tiktok"), ("status", "violation")))] == 1
    assert values[("appban_findings", (("entry", "wechat"), ("status", "advisory")))] == 1
    assert values[("appban_findings_by_status", (("status", "exempt"),))] == 0
    assert values[("appban_apps", (("source", "dpkg"),))] == 2
    assert values[("appban_apps", (("source", "desktop"),))] == 1
    assert values[("appban_collector_errors", (("collector", "process"),))] == 1
    assert values[("appban_banlist_serial", ())] == 12
    assert values[("appban_banlist_stale", ())] == 1
    assert values[("appban_banlist_age_seconds", ())] == timedelta(days=10).total_seconds()
    assert values[("appban_last_scan_duration_seconds", ())] == 0.25
    assert values[("appban_push_queue_depth", ())] == 4
    assert values[("appban_push_dropped_total", ())] == 1
    assert values[("appban_push_dead_lettered_total", ())] == 2
    assert values[("appban_compliant", ())] == 0


def test_before_the_first_scan_only_service_metrics() -> None:
    names = {f.name for f in families(Snapshot(), NOW)}
    assert names == {"appban_push_queue_depth", "appban_push_dropped", "appban_push_dead_lettered"}


def test_registry_renders_text_format() -> None:
    text = generate_latest(SnapshotCollector(snapshot, lambda: NOW)).decode()
    assert '# TYPE appban_findings gauge' in text
    assert 'appban_findings{entry="tiktok",status="violation"} 1.0' in text
    assert "process_cpu_seconds_total" not in text


@pytest.mark.parametrize("text, expected", [
    ("9464", ("127.0.0.1", 9464)), ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:9464", ("::1", 9464)),
    (":9464", ("127.0.0.1", 9464)),
])
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["host", "host:port", "1:70000", ""])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(ListenError, match="server.listen"):
        parse_listen(text)


def test_live_install_reloads_and_starts_image_install_only_enables() -> None:
    live = [s.describe() for s in plan("install", Path("/"), "/opt/appban/bin/appban", False)]
    assert live == ["write /etc/systemd/system/appban.service",
                    "remove /etc/systemd/system/appban.service.d/report-only.conf",
                    "run systemctl daemon-reload", "run systemctl enable --now appban.service"]
    unit = plan("install", Path("/"), "/opt/appban/bin/appban", False)[0].text
    assert "ExecStart=/opt/appban/bin/appban run " in unit
    image = [s.describe() for s in plan("uninstall", Path("/img"), "x", False)]
    assert image == ["run systemctl --root=/img disable appban.service",
                     "remove /img/etc/systemd/system/appban.service.d/report-only.conf",
                     "remove /img/etc/systemd/system/appban.service"]


def test_exec_start_words_are_quoted_as_systemd_reads_them() -> None:
    assert systemd_quote("/usr/bin/appban") == "/usr/bin/appban"
    assert systemd_quote("/opt/my apps/appban") == '"/opt/my apps/appban"'
    assert systemd_quote('/opt/a"b') == '"/opt/a\\"b"' and systemd_quote("C:\\x") == '"C:\\\\x"'
    assert systemd_quote("/etc/100%/$HOME.yaml") == "/etc/100%%/$$HOME.yaml"
    assert exec_start("/usr/bin/appban", "/etc/appban/site a.yaml") == \
        'ExecStart=/usr/bin/appban run --config "/etc/appban/site a.yaml" --state-dir /var/lib/appban'


def test_a_virtualenv_counts_as_a_checkouts_only_beside_the_source(tmp_path: Path) -> None:
    checkout, deployed = tmp_path / "src/appban", tmp_path / "opt/appban"
    for top in (checkout, deployed):
        (top / ".venv/bin").mkdir(parents=True)
        (top / ".venv/pyvenv.cfg").write_text("home = /usr/bin\n")
    (checkout / "agent").mkdir()
    (checkout / "agent/cli.py").write_text("")
    assert checkout_venv(checkout / ".venv/bin/appban") == checkout / ".venv"
    assert checkout_venv(deployed / ".venv/bin/appban") is None
    assert checkout_venv(Path("/usr/bin/appban")) is None
