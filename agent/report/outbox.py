"""The durable outbox: reports wait here (SQLite in the state directory) until a push succeeds.

A report is committed to disk before any attempt to send it and deleted only after the receiver
answered 2xx, so a report made while the server is down, or just before a crash or `kill -9`, is
sent later. The outbox is bounded: beyond `max_queue` the oldest reports are dropped, counted and
logged, so a long outage never fills the disk. A report the receiver refuses for good (a 4xx about
that report) is moved to the dead letters, kept for a person to look at and counted, so it cannot
block the reports behind it; the dead letters are bounded by `max_queue` too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from agent.log import log_event

logger = logging.getLogger(__name__)

FILENAME = "outbox.sqlite"
BUSY_TIMEOUT = 10.0
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "id TEXT NOT NULL UNIQUE, queued REAL NOT NULL, body BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dead (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
    "queued REAL NOT NULL, failed REAL NOT NULL, status INTEGER NOT NULL, reason TEXT NOT NULL, body BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS acknowledged (one INTEGER PRIMARY KEY CHECK (one = 1), inventory TEXT NOT NULL, "
    "digest TEXT NOT NULL)",
)


@dataclass(frozen=True)
class Pending:
    """One queued report: its id (the idempotency key), when it was queued and its JSON body."""

    id: str
    queued: float
    body: bytes


@dataclass(frozen=True)
class Acknowledged:
    """What the receiver acknowledged of the last inventory pushed: the agent's own digest of that
    inventory (`inventory`) and the receiver's (`digest`), sent in its place while it is unchanged."""

    inventory: str
    digest: str


class Outbox:
    """A bounded FIFO of report bodies keyed by report id, safe across crashes (WAL, fsync)."""

    def __init__(self, state_dir: str | Path, max_queue: int, read_only: bool = False) -> None:
        """Open (creating if needed) the outbox in `state_dir`; `read_only` opens an existing one
        without changing it (for `appban status`, which must not write the service's files).
        Raise sqlite3.Error if unusable. (sqlite3 is imported here: a service that pushes nothing
        never opens an outbox, and does not keep SQLite's ~1.7 MiB.)"""
        import sqlite3

        self.path = Path(state_dir) / FILENAME
        self.max_queue = max(1, max_queue)
        if read_only:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT,
                                       isolation_level=None, check_same_thread=False)
            return
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        for statement in _SCHEMA:
            self._db.execute(statement)

    def close(self) -> None:
        self._db.close()

    def put(self, report_id: str, body: bytes) -> int:
        """Queue a report (a second put of the same id is ignored); return how many old reports
        were dropped to stay within the bound."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR IGNORE INTO outbox (id, queued, body) VALUES (?, ?, ?)",
                             (report_id, time.time(), body))
            excess = self.depth() - self.max_queue
            if excess > 0:
                self._db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                                 (excess,))
                self._db.execute("INSERT INTO counters VALUES ('dropped', ?) "
                                 "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (excess,))
        if excess > 0:
            log_event(logger, logging.WARNING, "outbox.dropped", count=excess, total_dropped=self.dropped(),
                      max_queue=self.max_queue)
        return max(excess, 0)

    def pending(self) -> list[Pending]:
        """Return the queued reports, oldest first."""
        rows = self._db.execute("SELECT id, queued, body FROM outbox ORDER BY seq").fetchall()
        return [Pending(id=r[0], queued=r[1], body=bytes(r[2])) for r in rows]

    def delete(self, report_id: str, acknowledged: Acknowledged | None = None) -> None:
        """Remove a report the receiver has acknowledged, and in the same transaction remember
        what it acknowledged of the report's inventory (None: nothing, forget the last)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM outbox WHERE id = ?", (report_id,))
            self._remember(acknowledged)

    def acknowledged(self) -> Acknowledged | None:
        """Return what the receiver acknowledged of the last inventory sent, if it answered a digest."""
        row = self._db.execute("SELECT inventory, digest FROM acknowledged").fetchone()
        return Acknowledged(row[0], row[1]) if row else None

    def forget_acknowledged(self) -> None:
        """Forget the acknowledged digest (the receiver no longer holds that inventory)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._remember(None)

    def _remember(self, acknowledged: Acknowledged | None) -> None:
        self._db.execute("DELETE FROM acknowledged")
        if acknowledged is not None:
            self._db.execute("INSERT INTO acknowledged VALUES (1, ?, ?)", (acknowledged.inventory, acknowledged.digest))

    def dead_letter(self, report_id: str, status: int, reason: str) -> None:
        """Move a report the receiver refused for good out of the queue into the dead letters
        (kept with the answer that refused it; the oldest beyond `max_queue` are dropped)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO dead (id, queued, failed, status, reason, body) "
                             "SELECT id, queued, ?, ?, ?, body FROM outbox WHERE id = ?",
                             (time.time(), status, reason, report_id))
            self._db.execute("DELETE FROM outbox WHERE id = ?", (report_id,))
            self._db.execute("DELETE FROM dead WHERE seq IN (SELECT seq FROM dead ORDER BY seq DESC LIMIT -1 OFFSET ?)",
                             (self.max_queue,))
            self._db.execute("INSERT INTO counters VALUES ('dead_lettered', 1) "
                             "ON CONFLICT(name) DO UPDATE SET value = value + 1")

    def dead_lettered(self) -> int:
        """Return how many reports were dead-lettered over the outbox's lifetime."""
        return self._counter("dead_lettered")

    def dead_letters(self) -> list[tuple[str, int, str]]:
        """Return (report id, HTTP status, reason) of the dead letters kept, oldest first."""
        return [(r[0], int(r[1]), r[2]) for r in
                self._db.execute("SELECT id, status, reason FROM dead ORDER BY seq").fetchall()]

    def hold_until(self, when: float) -> None:
        """Send nothing before `when` (seconds since the epoch): the receiver asked to wait."""
        self._db.execute("INSERT INTO counters VALUES ('not_before', ?) "
                         "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (int(when) + 1,))

    def not_before(self) -> float:
        """Return when sending may resume (0: now), as set by `hold_until`."""
        return float(self._counter("not_before"))

    def depth(self) -> int:
        """Return how many reports wait to be sent."""
        return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def dropped(self) -> int:
        """Return how many reports were dropped over the outbox's lifetime to respect the bound."""
        return self._counter("dropped")

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0
