"""Pulling agents' reports: the fleet polls `appban run` endpoints (`server.listen`) on a schedule.

Targets come from `pull.targets` and `pull.targets_file` (Prometheus file_sd style, re-read when it
changes) of any server on the database: each server lists its own under its name in
`pull_target_sources`, and `pull_targets` holds the union — so one server's config (or targets
file) is enough for all of them to share the polling. That table is also how they share the work: each claims due targets with `FOR UPDATE SKIP LOCKED` and a
lease, so no agent is polled twice per interval and the targets of a server that died are taken
over once its lease runs out. An agent that does not answer backs off exponentially (up to
`pull.max_backoff`) and turns stale; it is never dropped. A target is bound to the device id of
its first answer: a later answer naming another device is refused.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import and_, delete, insert, or_, select, text, update

from agent.banlist.fetch import FetchError, make_session, within
from agent.config import interval_seconds
from agent.documents import DocumentError, load_document
from agent.fleet import tables as t
from agent.fleet.config import PullTarget
from agent.fleet.ingest import RefusedReport, parse_report
from agent.fleet.store import scoped_key
from agent.fleet.verdict import judge
from agent.log import log_event

logger = logging.getLogger(__name__)

CLAIM_FACTOR = 2
"""Targets claimed per round, as a multiple of `pull.concurrency`."""
SYNC_EVERY = 60.0
"""Seconds between refreshes of a server's rows in the shared target list while its config is unchanged."""
SOURCE_TTL = 86400.0
"""A server's listing of a target lapses when it was not refreshed for this long (the server is gone)."""
SYNC_LOCK = 0x61707062616F  # serialises the reconciliation of the shared list on PostgreSQL


def target_files(path: str) -> list[PullTarget]:
    """Read a file_sd-style targets file: a list of {targets: [url, …], labels: {token_file: F}}.

    Raise ValueError (one line naming the file) if it is malformed.
    """
    try:
        groups = load_document(Path(path).read_bytes(), f"pull.targets_file {path}") or []
    except OSError as exc:
        raise ValueError(f"pull.targets_file {path}: cannot read: {exc.strerror or exc}") from None
    except DocumentError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(groups, list):
        raise ValueError(f"pull.targets_file {path}: expected a list of target groups")
    found = []
    for number, group in enumerate(groups, 1):
        if not isinstance(group, dict) or not isinstance(group.get("targets"), list):
            raise ValueError(f"pull.targets_file {path}: group #{number} has no 'targets' list")
        labels = group.get("labels") if isinstance(group.get("labels"), dict) else {}
        found += [PullTarget(url=str(url), token_file=str(labels.get("token_file", ""))) for url in group["targets"]]
    return found


def _endpoint(url: str, path: str) -> str:
    return url.rstrip("/") + path


class Puller:
    """Polls the due pull targets of one server process."""

    def __init__(self, fleet: Any, source: str = "") -> None:
        """`source` names this server in the shared target list (default: host name and listen
        address, stable across restarts)."""
        self.fleet = fleet
        self.owner = secrets.token_hex(8)
        self.source = (source or f"{socket.gethostname()} {fleet.config.listen}")[:t.ID]
        self._refresh_at = self._look_at = 0.0
        self._any_shared = False
        self._file_stamp: float | None = None
        self._file_targets: list[PullTarget] = []
        self._synced: dict[str, PullTarget] | None = None
        self._local = threading.local()

    def targets(self) -> list[PullTarget]:
        """Return every configured target (the targets file re-read only when it changed)."""
        pull = self.fleet.config.pull
        if pull.targets_file:
            try:
                stamp = os.stat(pull.targets_file).st_mtime
                if stamp != self._file_stamp:
                    self._file_targets, self._file_stamp = target_files(pull.targets_file), stamp
            except (OSError, ValueError) as exc:
                log_event(logger, logging.ERROR, "pull.targets_failed", error=str(exc))
        return list({t.url: t for t in (*pull.targets, *self._file_targets)}.values())

    def sync(self, now: float) -> None:
        """Bring this server's share of the shared target list in step with its config: list its
        targets under its own name in `pull_target_sources`, drop those it no longer lists, and
        keep in `pull_targets` exactly the targets some server lists (or listed within
        SOURCE_TTL: a server that stopped for good lets go of its targets after a day). Between
        config changes it only refreshes its rows every SYNC_EVERY seconds."""
        wanted = {target.url: target for target in self.targets()}
        if wanted == self._synced and now < self._refresh_at:
            return
        p, s = t.pull_targets, t.pull_target_sources
        with self.fleet.store.write() as connection:
            if not self.fleet.store.sqlite:  # one server reconciles at a time (SQLite: BEGIN IMMEDIATE already)
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SYNC_LOCK})
            connection.execute(delete(s).where(or_(s.c.seen < now - SOURCE_TTL,
                                                   and_(s.c.source == self.source, s.c.url.not_in(list(wanted))))))
            mine = set(connection.scalars(select(s.c.url).where(s.c.source == self.source)))
            if mine:
                connection.execute(update(s).where(s.c.source == self.source).values(seen=now))
            if set(wanted) - mine:
                connection.execute(insert(s), [{"url": url, "source": self.source, "seen": now}
                                               for url in set(wanted) - mine])
            listers = {}
            for url, source in connection.execute(select(s.c.url, s.c.source)):
                listers.setdefault(url, set()).add(source)
            known = {row.url: row.token_file for row in connection.execute(select(p.c.url, p.c.token_file))}
            gone = set(known) - set(listers)
            if gone:
                connection.execute(delete(p).where(p.c.url.in_(gone)))
            for url, target in wanted.items():
                if url not in known:
                    connection.execute(insert(p).values(url=url, token_file=target.token_file, due=now, lease_owner="",
                                                        lease_until=0.0, failures=0, last_error="", device_id=""))
                elif known[url] != target.token_file and listers[url] == {self.source}:
                    connection.execute(update(p).where(p.c.url == url).values(token_file=target.token_file))
                elif known[url] != target.token_file and wanted != self._synced:
                    log_event(logger, logging.WARNING, "pull.token_file_conflict", target=url, kept=known[url],
                              ignored=target.token_file)
        self._synced, self._refresh_at = wanted, now + SYNC_EVERY  # only once written: a failure is retried

    def _shared_targets(self, now: float) -> bool:
        """Whether other servers listed any target (looked up every SYNC_EVERY seconds): a server
        without pull targets of its own still takes its share of theirs."""
        if now >= self._look_at:
            with self.fleet.store.read() as connection:
                self._any_shared = connection.scalar(select(t.pull_targets.c.url).limit(1)) is not None
            self._look_at = now + SYNC_EVERY
        return self._any_shared

    def claim(self, now: float) -> list[Any]:
        """Lease the due targets this server will poll now (skipping rows another server holds)."""
        pull = self.fleet.config.pull
        p = t.pull_targets
        with self.fleet.store.write() as connection:
            rows = connection.execute(
                select(p).where(p.c.due <= now, or_(p.c.lease_owner == "", p.c.lease_until < now))
                .order_by(p.c.due).limit(pull.concurrency * CLAIM_FACTOR).with_for_update(skip_locked=True)).all()
            if rows:
                connection.execute(update(p).where(p.c.url.in_([r.url for r in rows]))
                                   .values(lease_owner=self.owner, lease_until=now + pull.timeout * 3))
        return rows

    def poll_due(self) -> int:
        """Sync this server's targets, claim the due ones of the shared list and poll them with
        bounded concurrency; return how many."""
        now = time.time()
        if self.fleet.config.pull.targets or self.fleet.config.pull.targets_file:
            self.sync(now)
        elif not self._shared_targets(now):
            return 0  # nothing to poll: no write transaction every tick
        rows = self.claim(now)
        if rows:
            with ThreadPoolExecutor(max_workers=self.fleet.config.pull.concurrency) as pool:
                list(pool.map(self._poll_and_record, rows))
        return len(rows)

    def _poll_and_record(self, row: Any) -> None:
        pull = self.fleet.config.pull
        try:
            device = self.poll(row)
            error = ""
        except (requests.RequestException, FetchError, RefusedReport, OSError, ValueError) as exc:
            device, error = row.device_id, " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        now = time.time()
        interval = interval_seconds(pull.interval)
        failures = row.failures + 1 if error else 0
        delay = min(interval * (2 ** min(failures, 20)), interval_seconds(pull.max_backoff)) if error else interval
        values: dict[str, Any] = {"due": now + delay, "lease_owner": "", "lease_until": 0.0, "failures": failures,
                                  "last_error": error, "device_id": device}
        if not error:
            values["last_ok"] = now
        else:
            log_event(logger, logging.WARNING, "pull.failed", target=row.url, device=row.device_id or None,
                      error=error, failures=failures, retry_in=round(delay))
        with self.fleet.store.write() as connection:
            connection.execute(update(t.pull_targets).where(t.pull_targets.c.url == row.url).values(**values))

    def poll(self, row: Any) -> str:
        """Fetch one agent's report and inventory, ingest them, return the device id.

        Raise requests.RequestException, RefusedReport or OSError when the agent cannot be used.
        """
        pull = self.fleet.config.pull
        token = Path(row.token_file).read_text(encoding="utf-8").strip() if row.token_file else ""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        document = json.loads(self._get(_endpoint(row.url, "/v1/report"), headers, pull.timeout))
        if not isinstance(document, dict):
            raise RefusedReport(422, "report is not a JSON object")
        document["inventory"] = json.loads(self._get(_endpoint(row.url, "/v1/inventory"), headers, pull.timeout))
        report_id, inventory, claim = parse_report(json.dumps(document).encode(), row.device_id or None)
        device = inventory.devices[0].id
        now = time.time()
        verdicts = judge(self.fleet.policy, inventory, {device: claim}, datetime.fromtimestamp(now, timezone.utc))
        result = self.fleet.store.ingest(verdicts, "pull", now, report_id, scoped_key(f"pull:{row.url}", report_id),
                                         json.dumps(document))
        if result.replayed:
            self.fleet.store.touch(device, now)  # the agent answered, with a report already stored
        return device

    def session(self) -> requests.Session:
        """This polling thread's session (pull's TLS settings): one per thread, because the
        deadline watchdog cuts every connection of a session's adapter, and the other threads'
        polls must not be cut with it."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = make_session(self.fleet.config.pull)
        return session

    def _get(self, url: str, headers: dict[str, str], timeout: float) -> bytes:
        """GET `url` within `timeout` seconds for the whole exchange (requests' own timeout is per
        read, so an agent answering a byte a second would hold a polling thread for ever), and at
        most `max_body` bytes. Raise FetchError past the deadline, RefusedReport past the size."""
        session = self.session()
        return within(time.monotonic() + timeout, timeout, session, url,
                      lambda: self._read(session, url, headers, timeout))

    def _read(self, session: requests.Session, url: str, headers: dict[str, str], timeout: float) -> bytes:
        limit = self.fleet.config.max_body
        # verify per request: requests lets REQUESTS_CA_BUNDLE override a Session's verify.
        with session.get(url, headers=headers, timeout=timeout, stream=True, verify=session.verify) as response:
            response.raise_for_status()
            body = b""
            for chunk in response.iter_content(65536):
                body += chunk
                if len(body) > limit:
                    raise RefusedReport(413, f"{url}: answer larger than {limit} bytes")
        return body
