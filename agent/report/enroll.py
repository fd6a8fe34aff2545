"""Enrollment with an `appban fleet` server: trade the fleet's enroll secret for a per-device token.

Like osquery's enroll secret and node key: the shared secret is only ever sent to `/v1/enroll`;
the token that comes back is bound to this device id, kept in the state directory (mode 0600) and
sent with every push. A push refused with 401 drops the token, so the next cycle enrolls again
(the fleet was rebuilt, or the administrator revoked the device). The fleet enrolls a device id
it already knows only with the administrator's leave (`appban fleet reenroll ID`): an agent that
lost its token says so in one line (push.enroll_failed) and keeps its reports queued.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from agent.atomic import write_atomic
from agent.config import PushConfig
from agent.log import log_event
from agent.printable import printable

if TYPE_CHECKING:  # requests loads with the first enrollment, not with the push sink (~6 MB idle)
    import requests

logger = logging.getLogger(__name__)

TOKEN_FILE = "fleet-token"
REPORTS_PATH = "/v1/reports"
ENROLL_PATH = "/v1/enroll"
MAX_TOKEN = 512


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


def stored_token(state_dir: Path) -> str:
    """Return the token kept from an earlier enrollment, or "" when there is none."""
    try:
        return (state_dir / TOKEN_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def forget_token(state_dir: Path) -> None:
    """Drop the kept token (the fleet refused it), so the next push enrolls again."""
    (state_dir / TOKEN_FILE).unlink(missing_ok=True)


def enroll(config: PushConfig, secret: str, device: dict[str, str], state_dir: Path,
           session: requests.Session) -> str:
    """Given the enroll secret and this device's identity (id, hostname), enroll, keep the token
    in `state_dir` and return it. Raise EnrollError (one line) when refused or unreachable."""
    import requests

    url = enroll_url(config.url)
    try:
        response = session.post(url, json={"secret": secret, **device}, timeout=config.timeout,
                                verify=session.verify)
        body = response.content[: MAX_TOKEN * 4]
        response.close()
    except requests.RequestException as exc:
        raise EnrollError(f"enroll {url}: {type(exc).__name__}: {exc}") from None
    if response.status_code == 409:  # the id is taken: only the administrator can hand it over again
        name = printable(str(device.get("device", "")))
        raise EnrollError(f"enroll {url}: HTTP 409: device {name} is already enrolled and this agent has no token "
                          f"for it; the fleet administrator must run `appban fleet reenroll {name}`")
    if response.status_code != 200:
        raise EnrollError(f"enroll {url}: HTTP {response.status_code}")
    try:
        token = str(json.loads(body)["token"])
    except (ValueError, KeyError, TypeError):
        raise EnrollError(f"enroll {url}: answer has no token") from None
    if not token.isascii() or not token.isprintable() or not 16 <= len(token) <= MAX_TOKEN:
        raise EnrollError(f"enroll {url}: answer's token is malformed")
    write_atomic(state_dir / TOKEN_FILE, token.encode() + b"\n", mode=0o600)
    log_event(logger, logging.INFO, "push.enrolled", device=device.get("id"), url=url)
    return token
