"""Group commit for pushed reports: one writer thread stores the pushes that arrived together in
one transaction (`Store.push_batch`), then answers each of them.

Why: a push used to be its own transaction on a worker thread of its own, and for an unchanged
report that transaction (BEGIN, two statements, COMMIT; a WAL flush on PostgreSQL) and the hand-off
were most of what the server spent. Pushes that arrive while the writer is busy wait in a queue and
form the next group, so there is no timer and no added latency when the fleet is quiet: a group of
one is stored at once, and the groups grow only with the load.

Durability is unchanged: a push's future is settled only after the transaction holding it
committed (or failed, then the push gets the error and the agent retries with the same key).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict, deque
from typing import Sequence

from agent.fleet.metrics import Counters
from agent.fleet.store import Ingested, PushJob, Store
from agent.log import log_event

logger = logging.getLogger(__name__)

MAX_GROUP = 64
"""Most pushes in one transaction: bounds how long the database's write lock is held at once and
the size of the group's IN lists."""

_Waiting = tuple[PushJob, "asyncio.Future[Ingested | Exception]", asyncio.AbstractEventLoop]


class GroupCommit:
    """The one writer of pushed reports in this server process (started on the first push)."""

    def __init__(self, store: Store, counters: Counters, max_group: int = MAX_GROUP) -> None:
        self.store, self.counters, self.max_group = store, counters, max_group
        self._queue: deque[_Waiting] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    async def push(self, job: PushJob) -> Ingested:
        """Queue a push and return its answer once its group committed (a sighting on SQLite,
        when no write is under way: stored at once, `Store.sight_at_once`, a group of one).
        Raise what Store.push_batch gave for it (RefusedReport, TokenRevoked, SQLAlchemyError, …)."""
        at_once = self.store.sight_at_once(job)
        if at_once is not None:
            self.counters.group(1)
            return at_once
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Ingested | Exception] = loop.create_future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the fleet server is stopping")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fleet-group-commit", daemon=True)
                self._thread.start()
            self._queue.append((job, future, loop))
            self.counters.queued = len(self._queue)
            self._ready.notify()
        result = await future
        if isinstance(result, Exception):
            raise result
        return result

    def close(self, timeout: float = 30.0) -> None:
        """Store what is queued, then stop the writer (the server is shutting down)."""
        with self._ready:
            self._closed = True
            self._ready.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                group = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_group))]
                self.counters.queued = len(self._queue)
            self._commit(group)

    def _commit(self, group: Sequence[_Waiting]) -> None:
        """Store one group, then settle every push's future on its event loop (one wake-up each)."""
        try:
            results = self.store.push_batch([job for job, _, _ in group])
        except Exception as exc:  # noqa: BLE001 - nothing of the group was kept: each push gets the error
            log_event(logger, logging.ERROR, "ingest.group_failed", pushes=len(group),
                      error=" ".join(f"{type(exc).__name__}: {exc}".split())[:300])
            results = [exc] * len(group)
        self.counters.group(len(group))
        answers: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Ingested | Exception], Ingested | Exception]]]
        answers = defaultdict(list)
        for (_, future, loop), result in zip(group, results):
            answers[loop].append((future, result))
        for loop, settled in answers.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # that loop is closed: nobody waits for these answers any more
                pass


def _settle(answers: list[tuple[asyncio.Future[Ingested | Exception], Ingested | Exception]]) -> None:
    for future, result in answers:
        if not future.done():  # a client that went away: its push is stored, its retry is a replay
            future.set_result(result)
