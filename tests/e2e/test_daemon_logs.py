"""What `appban run` logs at the default level, as a real process: that it listens (and where),
one event per finding (so a SIEM needs no report parsing), each line with an ISO 8601 time."""

from __future__ import annotations

import json
import signal
from datetime import datetime
from pathlib import Path

import yaml

from tests.banlist_servers import free_port
from tests.service_support import TOKEN, Daemon, wait_until, write_config


def test_the_default_level_shows_listening_and_each_finding(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, server={"listen": f"127.0.0.1:{port}", "token_file": str(tmp_path / "token")})
    settings = yaml.safe_load(config.read_text())
    settings["logging"] = {"format": "json"}  # level left at its default
    config.write_text(yaml.safe_dump(settings))
    assert TOKEN in (tmp_path / "token").read_text()
    daemon = Daemon(config)
    try:
        wait_until(lambda: daemon.events("scan.done"), timeout=60)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.stop()
    listening = daemon.events("server.listening")
    assert [e["address"] for e in listening] == [f"127.0.0.1:{port}"]
    findings = daemon.events("scan.finding")
    assert {(e["app"], e["rule"], e["status"], e["device"], e["source"]) for e in findings} == {
        ("tiktok-desktop", "tiktok", "violation", "test-host", "dpkg"),
        ("wechat", "wechat", "advisory", "test-host", "dpkg")}
    assert all(e["level"] == "info" for e in findings)
    for line in daemon.log_path.read_text().splitlines():
        assert datetime.fromisoformat(json.loads(line)["time"]).tzinfo is not None
