"""What the service loads only when its configuration uses it (issue 14: the idle service's
memory): the push outbox (SQLite) when push is configured or an outbox is left in the state
directory — either way status and metrics count what it holds — and the enforcement engine, the
exec guard and the network block only when blocking is on. The service runs in this process (or
a child, to see what it imported) on a real dpkg status file in a temp root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.report.outbox import FILENAME, Outbox
from agent.service.daemon import Service
from agent.service.settings import ServiceError, load_settings
from tests.service_support import BANLIST, write_config


def service(tmp_path: Path, **sections: object) -> Service:
    (tmp_path / "list.yaml").write_text(BANLIST)
    config = write_config(tmp_path, banlist={"path": str(tmp_path / "list.yaml")}, **sections)
    (tmp_path / "state").mkdir(exist_ok=True)
    svc = Service(load_settings(str(config), None), lambda: load_settings(str(config), None))
    svc.refresh()
    return svc


def test_without_push_no_outbox_is_made_and_nothing_is_queued(tmp_path: Path) -> None:
    svc = service(tmp_path)
    try:
        svc.scan()
        svc.push()
        assert svc.outbox is None and not (tmp_path / "state" / FILENAME).exists()
        facts = svc.snapshot.facts()
        assert (facts["queue_depth"], facts["dropped"], facts["dead_lettered"]) == (0, 0, 0)
        assert facts["report"] is not None
    finally:
        svc._shutdown()


def test_an_outbox_left_by_an_earlier_config_is_still_counted(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    earlier = Outbox(tmp_path / "state", max_queue=1)
    earlier.put("r1", b"{}")
    earlier.put("r2", b"{}")  # drops r1: one queued, one dropped
    earlier.close()
    svc = service(tmp_path)
    try:
        svc.scan()
        facts = svc.snapshot.facts()
        assert (facts["queue_depth"], facts["dropped"]) == (1, 1)
        assert [p.id for p in svc.outbox.pending()] == ["r2"]  # a scan without push queues nothing
    finally:
        svc._shutdown()


def test_with_push_each_scan_is_queued(tmp_path: Path) -> None:
    svc = service(tmp_path, push={"url": "http://127.0.0.1:9/v1/reports", "token_file": str(tmp_path / "push-token")})
    try:
        svc.scan()
        assert svc.outbox is not None and svc.outbox.depth() == 1 and svc.snapshot.queue_depth == 1
    finally:
        svc._shutdown()


def test_an_outbox_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / FILENAME).write_bytes(b"not a database, " * 100)
    with pytest.raises(ServiceError, match=r"^outbox in .*state: "):
        service(tmp_path)


CHILD = """
import json, sys
from agent.service.daemon import Service
from agent.service.settings import load_settings
svc = Service(load_settings(sys.argv[1], None), lambda: load_settings(sys.argv[1], None))
svc.refresh()
svc.scan()
svc._shutdown()
print(json.dumps(sorted(sys.modules)))
"""


def test_a_reporting_service_scans_without_the_enforcement_engine_or_sqlite(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text(BANLIST)
    config = write_config(tmp_path, banlist={"path": str(tmp_path / "list.yaml")},
                          enforcement={"mode": "report", "root": str(tmp_path / "enforced")})
    (tmp_path / "state").mkdir()
    done = subprocess.run([sys.executable, "-c", CHILD, str(config)], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=300)
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert "agent.inventory.dpkg" in loaded and (tmp_path / "state" / "report.json").exists()
    assert not {"sqlite3", "agent.enforce.guard", "agent.enforce.execguard",
                "agent.enforce.fapolicyd", "agent.enforce.network", "agent.enforce.mdm", "psutil", "agent.export",
                "requests", "msgspec"} & loaded
