"""The SQLite outbox on a real file: bounded, durable across reopening, one row per report id."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.report.outbox import FILENAME, Outbox


def test_bound_drops_oldest_and_counts(tmp_path: Path, caplog) -> None:
    outbox = Outbox(tmp_path, max_queue=3)
    dropped = [outbox.put(f"r{n}", f"body {n}".encode()) for n in range(5)]
    assert dropped == [0, 0, 0, 1, 1]
    assert [p.id for p in outbox.pending()] == ["r2", "r3", "r4"]
    assert outbox.pending()[0].body == b"body 2"
    assert outbox.depth() == 3 and outbox.dropped() == 2
    assert "outbox.dropped" in caplog.text


def test_same_id_is_queued_once_and_survives_reopening(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, max_queue=10)
    outbox.put("a", b"1")
    outbox.put("b", b"2")
    outbox.put("a", b"again")
    outbox.delete("b")
    outbox.close()
    reopened = Outbox(tmp_path, max_queue=10)
    assert [(p.id, p.body) for p in reopened.pending()] == [("a", b"1")]
    reopened.close()
    with sqlite3.connect(tmp_path / FILENAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_dropped_count_is_kept_across_reopening(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, max_queue=1)
    outbox.put("a", b"1")
    outbox.put("b", b"2")
    outbox.close()
    assert Outbox(tmp_path, max_queue=1).dropped() == 1


def test_status_reads_the_outbox_without_changing_it(tmp_path) -> None:
    from agent.commands.status import gather_status

    outbox = Outbox(tmp_path, max_queue=10)
    outbox.put("r-1", b"{}")
    outbox.close()
    assert gather_status(tmp_path, max_queue=10)["queue_depth"] == 1
    # A file that is not (yet) the service's outbox is left exactly as it is: status never
    # creates tables or changes the journal mode of the service's files.
    other = tmp_path / "other"
    other.mkdir()
    (other / "outbox.sqlite").write_bytes(b"")
    status = gather_status(other, max_queue=10)
    assert "queue_depth" not in status
    assert (other / "outbox.sqlite").read_bytes() == b""
