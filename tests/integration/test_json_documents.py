"""Every JSON document appban writes names times in ISO 8601 with a zone — the report, the
inventory, the service's status, the SIEM lines, `policy show` — and the inventory says when it
was collected and by which agent. The service runs in this process on a real dpkg status file in
a temp root; `policy show` runs as a real process."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from agent import __version__
from agent.service.daemon import Service
from agent.service.settings import load_settings
from agent.service.state import INVENTORY, REPORT, STATUS
from tests.conftest import run_cli
from tests.service_support import write_config

TIME_KEYS = {"time", "generated", "issued", "expires", "effective", "started", "last_scan", "last_refresh",
             "stale_since", "fetched", "checked", "collected_at"}


def time_fields(document: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (path, value) for every key that names a moment, anywhere in the document."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key in TIME_KEYS:
                yield f"{path}.{key}", value
            yield from time_fields(value, f"{path}.{key}")
    elif isinstance(document, list):
        for index, item in enumerate(document):
            yield from time_fields(item, f"{path}[{index}]")


def assert_iso(document: Any, required: set[str]) -> None:
    found = dict(time_fields(document))
    assert required <= {path.rsplit(".", 1)[-1] for path, value in found.items() if value is not None}, found
    for path, value in found.items():
        if value is not None:
            assert isinstance(value, str), f"{path} is {value!r}, not an ISO 8601 string"
            assert datetime.fromisoformat(value).tzinfo is not None, f"{path} has no time zone"


def test_the_service_documents(tmp_path: Path) -> None:
    config = write_config(tmp_path, jsonl={"path": str(tmp_path / "siem.jsonl")})
    (tmp_path / "state").mkdir()
    svc = Service(load_settings(str(config), None), lambda: load_settings(str(config), None))
    try:
        svc.refresh()
        svc.scan()
        svc._guarded(lambda: None)  # writes status.json, as after every job
    finally:
        svc._shutdown()
    state = tmp_path / "state"
    report = json.loads((state / REPORT).read_text())
    inventory = json.loads((state / INVENTORY).read_text())
    assert_iso(report, {"generated"})
    assert_iso(inventory, {"collected_at"})
    assert inventory["agent"] == {"version": __version__}
    assert_iso(json.loads((state / STATUS).read_text()), {"started", "last_scan", "last_refresh"})
    for line in (tmp_path / "siem.jsonl").read_text().splitlines():
        assert_iso(json.loads(line), {"time"})


def test_a_saved_inventory_keeps_when_it_was_collected(tmp_path: Path) -> None:
    saved = tmp_path / "inventory.json"
    done = run_cli("inventory", "--source", "process", "--format", "json")
    assert done.returncode == 0, done.stderr
    saved.write_text(done.stdout)
    document = json.loads(done.stdout)
    assert_iso(document, {"collected_at"})
    again = run_cli("check", "--inventory", str(saved), "--format", "json")
    assert again.returncode in (0, 1), again.stderr
    assert_iso(json.loads(again.stdout), {"generated"})


def test_policy_show_json() -> None:
    done = run_cli("policy", "show", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert_iso(json.loads(done.stdout), {"issued"})
