"""The service opens its push outbox (SQLite) only when push is configured or an outbox is left in
the state directory (issue 14: the idle service's memory); either way status and metrics count
what it holds, with the service in this process reading a real dpkg status file in a temp root."""

from __future__ import annotations

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
