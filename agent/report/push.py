"""Push queued reports to the central server, oldest first, each exactly once per report id.

Each report is POSTed as `appban.report/v1` JSON with the header `Idempotency-Key: <report id>`
and removed from the outbox only after a 2xx answer. If the agent dies between the server's 2xx
and the removal, the same report is sent again with the same key on the next cycle; receivers
deduplicate on that key, which makes delivery exactly once per report id end to end.

What the other answers mean:
- 3xx: not delivered. Redirects are not followed (a POST turned into a GET by a 302 would "succeed"
  without the report arriving); the report stays queued and the cycle stops.
- 429 and 503: the receiver is overloaded; its `Retry-After` (seconds or an HTTP date, at most a
  day) is honoured: nothing is sent before then, across restarts.
- 401, 404, 405, 407, 408, 410, 421, 425: about the endpoint or the credentials, not this
  report; every report would get the same, so all stay queued and the cycle stops (after a 401
  the service enrolls again when it has an enrollment secret).
- any other 4xx (400, 403, 409, 413, 415, 422, …; a 409 to a differential push, below, is not
  one of them): the receiver refuses *this* report for good
  (`appban fleet` answers 403 for a report naming another device); it is
  dead-lettered (kept, counted in metrics and `appban status`) and the next report goes on, so one
  poisoned report cannot block the outbox forever.
- 5xx and network errors: tried again next cycle.
Each POST, answer included, has a total deadline (`push.deadline`): a receiver that trickles its
answer a byte at a time cannot hold the service's main loop.

Differential push (as osquery's differential results): `appban fleet` answers an accepted report
with the digest of the inventory it stored (`inventory_digest`). The agent keeps it in the outbox,
with its own digest of that inventory, in the transaction that removes the report; while its
inventory stays the same it sends that digest in place of the inventory, so an unchanged report is
a few hundred bytes the fleet neither reads in full nor hashes. A fleet that no longer holds that
inventory (a restored database, another server) answers 409, and the agent sends the same report,
same key, with its inventory at once: the outbox still holds the whole body, so nothing is lost.
A receiver that answers no digest gets whole reports only.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import timezone
from typing import TYPE_CHECKING, Callable

from agent.config import Config, PushConfig
from agent.log import log_event
from agent.model import Report
from agent.report.enroll import reports_url
from agent.report.outbox import Acknowledged, Outbox, Pending

if TYPE_CHECKING:  # requests loads with the first push, not with the sink seam (~6 MB idle)
    import requests

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
NOT_ABOUT_THE_REPORT = frozenset({401, 404, 405, 407, 408, 410, 421, 425, 429})
"""4xx answers about the endpoint, the credentials or the rate: keep the report, stop the cycle."""
BUSY = frozenset({429, 503})
MAX_RETRY_AFTER = 24 * 3600.0
RESEND_INVENTORY = 409
"""The fleet's answer to a report naming an inventory by a digest it does not hold: send it whole."""
DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class PushResult:
    """What one push cycle did: reports sent, reports still queued, the error that stopped it,
    and how many reports it dead-lettered."""

    sent: int
    remaining: int
    error: str = ""
    dead_lettered: int = 0


def retry_after_seconds(value: str | None, now: float) -> float:
    """Given a Retry-After header (delay-seconds or an HTTP date) and the time, return how long to
    wait, between 0 and MAX_RETRY_AFTER; 0 when absent or unreadable (RFC 9110, 10.2.3)."""
    text = (value or "").strip()
    if not text:
        return 0.0
    if text.isdigit():
        wait = float(text)
    else:
        from email.utils import parsedate_to_datetime  # the email package: only for an HTTP date

        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return 0.0
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        wait = when.timestamp() - now
    return min(max(wait, 0.0), MAX_RETRY_AFTER)


def push_body(report: Report, with_inventory: bool) -> bytes:
    """Return the body queued for a report: its `appban.report/v1` document, with the
    `appban.inventory/v1` document under `inventory` when asked (so a fleet can re-match it)."""
    from agent.inventory.file import inventory_to_dict  # here: a service that pushes nothing skips the MDM readers

    document = report.to_dict()
    if with_inventory:
        document["inventory"] = inventory_to_dict(report.inventory)
    return _json(document)


def _json(document: dict[str, object]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def inventory_digest(inventory: dict[str, object]) -> str:
    """The agent's own digest of a pushed inventory document, its `collected_at` left out (the
    time of every scan, not a change): equal digests, the same inventory."""
    import hashlib  # here: the service loads this module at start, and hashlib brings OpenSSL's libcrypto

    same = {key: value for key, value in inventory.items() if key != "collected_at"}
    return hashlib.sha256(json.dumps(same, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def differential_body(body: bytes, acknowledged: Acknowledged | None) -> tuple[bytes | None, str]:
    """Given a queued body and what the receiver acknowledged last, return the body to send in
    its place (the inventory replaced by the receiver's digest; None: send it whole) and the
    agent's digest of the body's inventory ("" when it carries none)."""
    try:
        document = json.loads(body)
    except ValueError:
        return None, ""
    inventory = document.get("inventory") if isinstance(document, dict) else None
    if not isinstance(inventory, dict):
        return None, ""
    mine = inventory_digest(inventory)
    if acknowledged is None or acknowledged.inventory != mine:
        return None, mine
    del document["inventory"]
    document["inventory_digest"] = acknowledged.digest
    return _json(document), mine


def acknowledged_by(response: requests.Response, mine: str) -> Acknowledged | None:
    """What a 2xx answer acknowledged of the inventory sent (None: no digest, or none sent)."""
    try:
        digest = response.json().get("inventory_digest") if mine else None
    except (ValueError, AttributeError):
        return None
    return Acknowledged(mine, digest) if isinstance(digest, str) and DIGEST.fullmatch(digest) else None


def refused_for_good(status: int) -> bool:
    """Whether an answer says this report will never be accepted (malformed, too large, another
    device's): a 4xx that is not about the endpoint, the credentials or the rate."""
    return 400 <= status < 500 and status not in NOT_ABOUT_THE_REPORT


def push_pending(outbox: Outbox, config: PushConfig, token: str, session: requests.Session,
                 clock: Callable[[], float] = time.time) -> PushResult:
    """Send every queued report in order through `session` (made by make_session(config), which
    carries the TLS settings); stop at the first failure that is not about one report, so order is
    kept and the rest wait for the next cycle. Never raises for network or server errors: they
    are in the result."""
    import requests

    from agent.banlist.fetch import FetchError, within

    sent = dead = 0
    if clock() < outbox.not_before():
        return PushResult(sent=0, remaining=outbox.depth(), error="waiting, as the receiver's Retry-After asked")
    headers = {"Content-Type": "application/json"}
    url = reports_url(config.url)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    def send(item: Pending, body: bytes) -> requests.Response:
        # verify per request: requests lets REQUESTS_CA_BUNDLE override a Session's verify,
        # and the administrator's ca_bundle must win over the environment.
        return within(time.monotonic() + config.deadline, config.deadline, session, url,
                      lambda: _post(session, url, config, body, {**headers, IDEMPOTENCY_HEADER: item.id}))

    acknowledged = outbox.acknowledged()
    for item in outbox.pending():
        try:
            response, mine, how = _deliver(outbox, item, acknowledged, send)
        except (requests.RequestException, FetchError) as exc:
            return _failed(outbox, sent, dead, item.id, " ".join(f"{type(exc).__name__}: {exc}".split()))
        status = response.status_code
        if 200 <= status < 300:
            acknowledged = acknowledged_by(response, mine)
            outbox.delete(item.id, acknowledged)
            sent += 1
            log_event(logger, logging.INFO, "push.sent", report=item.id, status=status, inventory=how)
            continue
        if refused_for_good(status):
            outbox.dead_letter(item.id, status, f"HTTP {status}")
            dead += 1
            log_event(logger, logging.ERROR, "push.dead_lettered", report=item.id, status=status)
            continue
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += " (a redirect, not followed: only a 2xx delivers a report)"
        if status in BUSY:
            wait = retry_after_seconds(response.headers.get("Retry-After"), clock())
            if wait:
                outbox.hold_until(clock() + wait)
                error += f" (retrying after {wait:g}s, as Retry-After asked)"
        return _failed(outbox, sent, dead, item.id, error)
    return PushResult(sent=sent, remaining=0, dead_lettered=dead)


def _deliver(outbox: Outbox, item: Pending, acknowledged: Acknowledged | None,
             send: Callable[[Pending, bytes], requests.Response]) -> tuple[requests.Response, str, str | None]:
    """Send one queued report, naming its inventory by the acknowledged digest when it is the
    same; a 409 to that sends it whole at once. Return the answer, the agent's digest of the
    report's inventory and how the answered body carried it ("digest", "whole", None: no
    inventory). Raise what `send` raises."""
    differential, mine = differential_body(item.body, acknowledged)
    whole = "whole" if mine else None
    if differential is None:
        return send(item, item.body), mine, whole
    response = send(item, differential)
    if response.status_code != RESEND_INVENTORY:
        return response, mine, "digest"
    outbox.forget_acknowledged()
    log_event(logger, logging.INFO, "push.inventory_resent", report=item.id, status=response.status_code)
    return send(item, item.body), mine, whole


def _post(session: requests.Session, url: str, config: PushConfig, body: bytes,
          headers: dict[str, str]) -> requests.Response:
    response = session.post(url, data=body, timeout=config.timeout, verify=session.verify, headers=headers,
                            allow_redirects=False)
    response.content  # noqa: B018 - read the answer within the deadline, then give the connection back
    response.close()
    return response


class PushSink:
    """Push as a sink (config `push:`): a report is queued in the outbox at scan time and sent by
    the service's push job (push_pending), so it survives a restart or a server that is down.
    With `push.inventory` (the default) the queued body carries the inventory too (push_body)."""

    name = "push"

    def __init__(self, config: Config, outbox: Outbox) -> None:
        self.outbox = outbox
        self.with_inventory = config.push.inventory

    @staticmethod
    def wanted(config: Config) -> bool:
        return bool(config.push.url)

    def accept(self, report: Report, document: bytes) -> None:
        self.outbox.put(report.id, push_body(report, True) if self.with_inventory else document)


def _failed(outbox: Outbox, sent: int, dead: int, report_id: str, error: str) -> PushResult:
    remaining = outbox.depth()
    log_event(logger, logging.WARNING, "push.failed", report=report_id, error=error, queued=remaining)
    return PushResult(sent=sent, remaining=remaining, error=error, dead_lettered=dead)
