"""Pure parts of the fleet: the agent's push/enroll URLs, the session cookie, metric label caps,
table/CSV rendering with control characters escaped, and filter parsing."""

from __future__ import annotations

import csv
import io

import pytest

from agent.fleet import query
from agent.fleet.auth import make_session, valid_session
from agent.fleet.metrics import MAX_VALUES, OTHER, Counters, capped, families
from agent.fleet.render import to_csv, to_table
from agent.report.enroll import enroll_url, reports_url


@pytest.mark.parametrize(("url", "reports", "enroll"), [
    ("https://fleet.example:8470", "https://fleet.example:8470/v1/reports", "https://fleet.example:8470/v1/enroll"),
    ("https://fleet.example/", "https://fleet.example/v1/reports", "https://fleet.example/v1/enroll"),
    ("https://lb.example/appban/v1/reports", "https://lb.example/appban/v1/reports", "https://lb.example/appban/v1/enroll"),
    ("https://siem.example/ingest", "https://siem.example/ingest", "https://siem.example/ingest/v1/enroll"),
])
def test_push_and_enroll_urls(url: str, reports: str, enroll: str) -> None:
    assert (reports_url(url), enroll_url(url)) == (reports, enroll)


def test_session_cookie_is_bound_to_the_token_and_expires() -> None:
    cookie = make_session("admin-token", now=1000.0)
    assert valid_session(cookie, "admin-token", now=1001.0)
    assert not valid_session(cookie, "rotated-token", now=1001.0)
    assert not valid_session(cookie, "admin-token", now=1000.0 + 9 * 3600)
    expires, signature = cookie.split(".")
    assert not valid_session(f"{int(expires) + 3600}.{signature}", "admin-token", now=1001.0)
    assert not valid_session("garbage", "admin-token") and not valid_session(cookie, "")


def test_agent_supplied_label_values_are_capped() -> None:
    groups = {f"group-{n}": n + 1 for n in range(MAX_VALUES + 30)}
    kept = capped(groups)
    assert len(kept) == MAX_VALUES + 1 and sum(kept.values()) == sum(groups.values())
    assert kept[OTHER] == sum(range(1, 31))
    facts = {"devices": [("weird\nkind", True, False, 2), ("android", False, False, 1)], "by_entry": {"tiktok": 1},
             "oldest": {"tiktok": 50.0}, "by_group": groups, "serials": {7: 3}, "drift": 0}
    rendered = {f.name: f for f in families(facts, Counters(), 100.0, 7)}
    kinds = {s.labels["kind"] for s in rendered["appban_fleet_devices"].samples}
    assert kinds == {"other", "android"}
    assert len(rendered["appban_fleet_noncompliant_devices_by_group"].samples) == MAX_VALUES + 1
    assert rendered["appban_fleet_oldest_violation_age_seconds"].samples[0].value == 50.0


def test_table_escapes_control_characters_and_csv_keeps_them_quoted() -> None:
    document = {"format": "appban.fleet-findings/v1", "total": 1, "findings": [{
        "device": "evil\x1b[2Jhost", "entry": "tiktok", "status": "violation", "app": {"id": "x", "name": "Tik\nTok"},
        "first_seen": "2026-12-01T00:00:00+00:00", "last_seen": "2026-12-01T00:00:00+00:00", "resolved_at": None}]}
    table = to_table(document)
    assert "\x1b" not in table and table.count("\n") == 2 and "Tik\ufffdTok" in table
    rows = list(csv.reader(io.StringIO(to_csv(document))))
    assert rows[1][:4] == ["evil\x1b[2Jhost", "tiktok", "violation", "Tik\nTok"] and rows[1][6] == ""


def test_filters() -> None:
    selection = query.selection_from({"since": "7d", "limit": "5", "noncompliant": "1"}, now=1_000_000.0)
    assert (selection.since, selection.limit, selection.noncompliant) == (1_000_000.0 - 7 * 86400, 5, True)
    assert query.parse_since("2026-12-01T00:00:00Z", 0) == 1796083200.0
    for bad in ({"limit": "-1"}, {"status": "gone"}, {"since": "yesterday"}):
        with pytest.raises(query.BadFilter):
            query.selection_from(bad, now=0.0)


def test_the_agent_never_loads_the_fleet_or_its_libraries() -> None:
    import subprocess
    import sys

    code = ("import sys, agent.cli, agent.commands.check, agent.commands.run, agent.service.daemon, agent.report.push;"
            "print([m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic', 'starlette', 'uvicorn',"
            " 'jinja2', 'psycopg') or m.startswith('agent.fleet')])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
