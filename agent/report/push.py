"""Push queued reports to the central server, oldest first, each exactly once per report id.

Each report is POSTed as `appban.report/v1` JSON with the header `Idempotency-Key: <report id>`
and removed from the outbox only after a 2xx answer (or a 4xx that says it will never be accepted,
logged as `push.rejected`, so one bad report cannot hold back every later one). If the agent dies between the server's 2xx
and the removal, the same report is sent again with the same key on the next cycle; receivers
deduplicate on that key, which makes delivery exactly once per report id end to end.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.config import Config, PushConfig
from agent.inventory.file import inventory_to_dict
from agent.log import log_event
from agent.model import Report
from agent.report.enroll import reports_url
from agent.report.outbox import Outbox

if TYPE_CHECKING:  # requests loads with the first push, not with the sink seam (~6 MB idle)
    import requests

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class PushResult:
    """What one push cycle did: reports sent, reports still queued, and the error that stopped it."""

    sent: int
    remaining: int
    error: str = ""


def push_body(report: Report, with_inventory: bool) -> bytes:
    """Return the body queued for a report: its `appban.report/v1` document, with the
    `appban.inventory/v1` document under `inventory` when asked (so a fleet can re-match it)."""
    document = report.to_dict()
    if with_inventory:
        document["inventory"] = inventory_to_dict(report.inventory)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def push_pending(outbox: Outbox, config: PushConfig, token: str, session: requests.Session) -> PushResult:
    """Send every queued report in order through `session` (made by make_session(config), which
    carries the TLS settings); stop at the first failure so order is kept and the rest wait for
    the next cycle. Never raises for network or server errors: they are in the result."""
    import requests

    sent = 0
    headers = {"Content-Type": "application/json"}
    url = reports_url(config.url)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    for item in outbox.pending():
        try:
            # verify per request: requests lets REQUESTS_CA_BUNDLE override a Session's verify,
            # and the administrator's ca_bundle must win over the environment.
            response = session.post(url, data=item.body, timeout=config.timeout, verify=session.verify,
                                    headers={**headers, IDEMPOTENCY_HEADER: item.id})
            response.close()
        except requests.RequestException as exc:
            return _failed(outbox, sent, item.id, " ".join(f"{type(exc).__name__}: {exc}".split()))
        if refused_for_good(response.status_code):
            # Sending it again would be refused again, and would hold every later report back.
            outbox.delete(item.id)
            log_event(logger, logging.ERROR, "push.rejected", report=item.id, status=response.status_code)
            continue
        if not 200 <= response.status_code < 300:
            return _failed(outbox, sent, item.id, f"HTTP {response.status_code}")
        outbox.delete(item.id)
        sent += 1
        log_event(logger, logging.INFO, "push.sent", report=item.id, status=response.status_code)
    return PushResult(sent=sent, remaining=0)


def refused_for_good(status: int) -> bool:
    """Whether an answer says this report will never be accepted (malformed, too large, another
    device's): a 4xx other than 401 (re-enroll), 408 and 429 (try later)."""
    return 400 <= status < 500 and status not in (401, 408, 429)


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


def _failed(outbox: Outbox, sent: int, report_id: str, error: str) -> PushResult:
    remaining = outbox.depth()
    log_event(logger, logging.WARNING, "push.failed", report=report_id, error=error, queued=remaining)
    return PushResult(sent=sent, remaining=remaining, error=error)
