"""Enrollment with an `appban fleet` server: trade the fleet's enroll secret for a per-device token,
and trade that token for a new one on a schedule (`push.rotate_token_every`).

Like osquery's enroll secret and node key: the shared secret is only ever sent to `/v1/enroll`;
the token that comes back is bound to this device id, kept in the state directory (mode 0600) and
sent with every push. A push refused with 401 drops the token, so the next cycle enrolls again
(the fleet was rebuilt, or the administrator revoked the device). The fleet enrolls a device id
it already knows only with the administrator's leave (`appban fleet reenroll ID`): an agent that
lost its token says so in one line (push.enroll_failed) and keeps its reports queued.

Why the agent proposes its own next token: the fleet replaces a token in the same transaction
that makes the new one, so if its answer is lost (a crash, a cut connection) after it committed,
an agent that only waited for the answer would hold a dead token, and enrolling again is refused
(409) until an administrator acts. So the agent first writes a proposal (`fleet-token.next`,
atomically, 0600), sends it, and when no answer came keeps it and proposes the same one again: a
push refused with 401 tries the proposal before giving up, and the first that works becomes
`fleet-token`. Either the fleet took the proposal or it did not; the agent holds a working token
in both cases. (The other design, the fleet keeping the old token valid until the new one is
first used, would move the check into every push's ingest statement.)
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit, urlunsplit

from agent.atomic import write_atomic
from agent.config import PushConfig, interval_seconds
from agent.log import Repeats, log_event
from agent.printable import printable

if TYPE_CHECKING:  # requests loads with the first enrollment, not with the push sink (~6 MB idle)
    import requests

    from agent.report.push import PushResult

logger = logging.getLogger(__name__)

TOKEN_FILE = "fleet-token"
PENDING_FILE = "fleet-token.next"
REPORTS_PATH = "/v1/reports"
ENROLL_PATH = "/v1/enroll"
MAX_TOKEN = 512
LOG_REPEATS_EVERY = 3600.0
"""A failure that repeats each push cycle (a refused re-enrollment, an unreachable fleet) is logged
the first time, then once an hour with a count (agent.log.Repeats)."""


class EnrollError(RuntimeError):
    """The fleet refused or could not be reached; one line, the push waits for the next cycle."""


def reports_url(url: str) -> str:
    """Given `push.url`, return where reports go: a bare base URL (no path, or `/`) means the
    fleet's `/v1/reports`; any other path is used as it is (a receiver of one's own)."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return urlunsplit(parts._replace(path=REPORTS_PATH))
    return url


def enroll_url(url: str) -> str:
    """Return the fleet's enroll URL next to the reports URL `push.url` names."""
    parts = urlsplit(reports_url(url))
    base = parts.path[: -len(REPORTS_PATH)] if parts.path.endswith(REPORTS_PATH) else parts.path.rstrip("/")
    return urlunsplit(parts._replace(path=base + ENROLL_PATH, query=""))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def stored_token(state_dir: Path) -> str:
    """Return the token kept from an earlier enrollment, or "" when there is none."""
    return _read(state_dir / TOKEN_FILE)


def pending_token(state_dir: Path) -> str:
    """Return the token this agent proposed and has not seen accepted yet, or ""."""
    pending = _read(state_dir / PENDING_FILE)
    return "" if pending == stored_token(state_dir) else pending


def adopt(state_dir: Path, token: str) -> None:
    """Keep `token` as the one to push with (atomically) and drop the proposal it settles."""
    write_atomic(state_dir / TOKEN_FILE, token.encode() + b"\n", mode=0o600)
    (state_dir / PENDING_FILE).unlink(missing_ok=True)


def forget_token(state_dir: Path) -> None:
    """Drop the kept token and any proposal (the fleet refused both), so the next push enrolls again."""
    (state_dir / TOKEN_FILE).unlink(missing_ok=True)
    (state_dir / PENDING_FILE).unlink(missing_ok=True)


def rotation_due(state_dir: Path, every: float, now: float | None = None) -> bool:
    """Whether the kept token is older than `every` seconds (0: never rotate); its age is the
    token file's, written when it was enrolled or rotated."""
    try:
        written = (state_dir / TOKEN_FILE).stat().st_mtime
    except OSError:
        return False
    return every > 0 and (time.time() if now is None else now) - written >= every


def _proposal(state_dir: Path) -> str:
    """The token to propose: the one proposed before and not settled (its answer may have been
    lost after the fleet took it), else a new one, written before it is ever sent."""
    pending = pending_token(state_dir)
    if pending:
        return pending
    # secrets.token_urlsafe(32), without importing secrets: it loads hmac, which maps libcrypto
    # (3.5 MiB) into the long-lived service (docs/performance.md, idle memory)
    proposal = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    write_atomic(state_dir / PENDING_FILE, proposal.encode() + b"\n", mode=0o600)
    return proposal


def enroll(config: PushConfig, secret: str, device: dict[str, str], state_dir: Path,
           session: requests.Session, current: str = "") -> str:
    """Given the enroll secret and this device's identity (id, hostname) — and, to rotate, the
    `current` token — enroll with a proposed token, keep the token granted in `state_dir` and
    return it. Raise EnrollError (one line) when refused or unreachable (the proposal stays only
    where the fleet may have taken it: no answer, or a rotation's 401)."""
    import requests

    url = enroll_url(config.url)
    headers = {"Authorization": f"Bearer {current}"} if current else {}
    body = {"secret": secret, **device, "token": _proposal(state_dir)}
    try:
        response = session.post(url, json=body, timeout=config.timeout, verify=session.verify, headers=headers)
        answer = response.content[: MAX_TOKEN * 4]
        response.close()
    except requests.RequestException as exc:
        raise EnrollError(f"enroll {url}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200 and not (current and response.status_code == 401):
        # The fleet answered, so it took nothing: the next try proposes a new token, and no push
        # tries this one. (A rotation's 401 may mean an earlier try with this proposal, whose
        # answer was lost, replaced the current token: that proposal is the one that works.)
        (state_dir / PENDING_FILE).unlink(missing_ok=True)
    if response.status_code == 409 and not current:  # the id is taken: only the administrator can hand it over
        name = printable(str(device.get("device", "")))
        raise EnrollError(f"enroll {url}: HTTP 409: device {name} is already enrolled and this agent has no token "
                          f"for it; the fleet administrator must run `appban fleet reenroll {name}`")
    if response.status_code != 200:
        raise EnrollError(f"enroll {url}: HTTP {response.status_code}")
    try:
        token = str(json.loads(answer)["token"])
    except (ValueError, KeyError, TypeError):
        raise EnrollError(f"enroll {url}: answer has no token") from None
    if not token.isascii() or not token.isprintable() or not 16 <= len(token) <= MAX_TOKEN:
        raise EnrollError(f"enroll {url}: answer's token is malformed")
    adopt(state_dir, token)  # a fleet that ignores proposals (older) made its own: that one counts
    log_event(logger, logging.INFO, "push.token_rotated" if current else "push.enrolled",
              device=device.get("device"), url=url)
    return token


class Enrollment:
    """The fleet token of a service that enrolls itself (`push.enroll_secret_file`): which token a
    push cycle uses, what a 401 means, and when the token is rotated; failures that repeat every
    cycle are logged once an hour. The service makes one and keeps it across reloads."""

    def __init__(self, state_dir: Path, clock: Callable[[], float] | None = None) -> None:
        self.state_dir = state_dir
        self.repeats = Repeats(LOG_REPEATS_EVERY, clock or time.monotonic)

    def token(self, config: PushConfig, secret: str, device: dict[str, str] | None,
              session: requests.Session) -> str | None:
        """The token to push with: the kept one, else an unsettled proposal (an enrollment whose
        answer was lost), else a new enrollment's; None (logged) when enrolling failed or there
        is no device identity yet (no scan has run)."""
        token = stored_token(self.state_dir) or pending_token(self.state_dir)
        if token or device is None:
            return token or None
        try:
            token = enroll(config, secret, device, self.state_dir, session)
        except (EnrollError, OSError) as exc:
            self.repeats.log(logger, logging.WARNING, "push.enroll_failed", str(exc), error=str(exc))
            return None
        self.repeats.clear()
        return token

    def settle(self, result: PushResult, token: str, retry: Callable[[str], PushResult]) -> PushResult:
        """After a push cycle with `token`: keep a token that delivered; on a 401 try the unsettled
        proposal with `retry` (the fleet may have taken it, its answer lost) and keep it if it
        delivers; drop both when the fleet refused both, so the next cycle enrolls again."""
        if result.sent and token != stored_token(self.state_dir):
            adopt(self.state_dir, token)
        if result.error != "HTTP 401":
            return result
        pending = pending_token(self.state_dir)
        if pending and pending != token:
            retried = retry(pending)
            if retried.sent:
                adopt(self.state_dir, pending)
                log_event(logger, logging.INFO, "push.token_recovered", sent=retried.sent)
            if retried.error != "HTTP 401":
                return retried
            result = retried
        forget_token(self.state_dir)  # revoked, or a new fleet: enroll again next cycle
        return result

    def rotate_if_due(self, config: PushConfig, secret: str, device: dict[str, str] | None,
                      session: requests.Session) -> None:
        """Trade the kept token for a new one when it is older than `push.rotate_token_every`
        (called after a cycle that delivered with it, so it is known to work)."""
        token = stored_token(self.state_dir)
        if not token or device is None or not rotation_due(
                self.state_dir, interval_seconds(config.rotate_token_every, allow_zero=True)):
            return
        try:
            enroll(config, secret, device, self.state_dir, session, current=token)
        except (EnrollError, OSError) as exc:
            self.repeats.log(logger, logging.WARNING, "push.rotate_failed", str(exc), error=str(exc))
            return
        self.repeats.clear()
