"""The report sinks: the JSON-lines file a SIEM tails, with the service in this process reading a
real dpkg status file in a temp root; a sink that cannot write is logged and the scan is kept."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import pytest

from agent.report.sinks import SINKS, open_sinks
from agent.service.daemon import Service
from agent.service.settings import load_settings
from agent.service.state import REPORT
from tests.service_support import BANLIST, write_config


def service(tmp_path: Path, jsonl: str) -> Service:
    (tmp_path / "list.yaml").write_text(BANLIST)
    config = write_config(tmp_path, banlist={"path": str(tmp_path / "list.yaml")}, jsonl={"path": jsonl})
    (tmp_path / "state").mkdir()
    svc = Service(load_settings(str(config), None), lambda: load_settings(str(config), None))
    svc.refresh()
    return svc


def test_each_scan_appends_one_line_per_finding_and_one_summary(tmp_path: Path) -> None:
    siem = tmp_path / "appban.jsonl"
    svc = service(tmp_path, str(siem))
    try:
        svc.scan()
        svc.scan()
    finally:
        svc._shutdown()
    records = [json.loads(line) for line in siem.read_text(encoding="ascii").splitlines()]
    findings = [r for r in records if r["event"] == "appban.finding"]
    scans = [r for r in records if r["event"] == "appban.scan"]
    assert len(scans) == 2 and scans[0]["report"] != scans[1]["report"]
    assert {(f["entry"], f["app"], f["status"]) for f in findings} == {
        ("tiktok", "tiktok-desktop", "violation"), ("wechat", "wechat", "advisory")}
    assert len(findings) == 4 and findings[0]["source"] == "dpkg"
    assert scans[-1]["counts"]["violation"] == 1 and scans[-1]["compliant"] is False
    assert all(datetime.fromisoformat(r["time"]).tzinfo is not None for r in records)
    assert siem.stat().st_mode & 0o777 == 0o640


def test_a_sink_that_cannot_write_is_logged_and_the_report_kept(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    svc = service(tmp_path, str(tmp_path / "no-such-folder" / "appban.jsonl"))
    logger = logging.getLogger("agent.report.sinks")  # "agent" stops propagating once log.configure ran
    logger.addHandler(caplog.handler)
    try:
        svc.scan()
    finally:
        logger.removeHandler(caplog.handler)
        svc._shutdown()
    assert (svc.settings.state_dir / REPORT).exists()
    failed = list({id(r): r for r in caplog.records if r.getMessage() == "sink.failed"}.values())
    assert len(failed) == 1 and failed[0].appban_fields["sink"] == "jsonl"


def test_the_sink_tuple_lists_push_and_jsonl_and_an_empty_block_is_off(tmp_path: Path) -> None:
    svc = service(tmp_path, "")
    try:
        assert [kind.name for kind in SINKS] == ["push", "jsonl"]
        assert open_sinks(svc.settings.config, svc.outbox) == []
    finally:
        svc._shutdown()
