"""Download a ban list and its signature over HTTPS, cheaply and defensively.

The list server is contacted by every device of a fleet on every refresh, so an unchanged list must
cost one small request (a conditional GET answered 304), a struggling server must not be hammered
(exponential backoff with jitter, and only for errors that can pass: 5xx and broken connections,
never 4xx), and a hostile or broken server must not be able to hang the agent (connect and read
timeouts, and a total `deadline` per download: requests' timeouts apply to each socket read, so
a server sending a byte a second would never trip them; a watchdog shuts the connection's socket
down when the deadline passes) or fill its memory (the body is streamed and cut off at
`max_bytes`). TLS verification is
always on; `ca_bundle` can narrow it to a private CA, never switch it off. Proxies come from the
environment as requests reads them (`HTTPS_PROXY`, `NO_PROXY`).

Every failure is a FetchError whose message is one line saying what went wrong (DNS, TLS, HTTP
status, timeout, too large, cut short) without the URL; the caller adds the URL and what stays in
force.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, TypeVar
from urllib.parse import urljoin

from agent import __version__
from agent.config import BanlistConfig, PushConfig
from agent.log import log_event
from agent.platform import system_trust
from agent.printable import printable

if TYPE_CHECKING:  # requests costs ~25 ms and ~6 MB: imported only when something is fetched
    import requests

logger = logging.getLogger(__name__)
T = TypeVar("T")

SIGNATURE_SUFFIX = ".minisig"
MAX_SIGNATURE_BYTES = 16 * 1024
"""A minisign signature is under 9 KiB even with the longest trusted comment minisign allows."""
CHUNK = 64 * 1024
MAX_BACKOFF = 60.0


class FetchError(RuntimeError):
    """A download that failed; the message is one line saying why (without the URL)."""

    def __init__(self, message: str, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
        """True for failures worth retrying: the connection broke, rather than the server refused."""


@dataclass(frozen=True)
class Validators:
    """What the server said identifies the copy we hold, for a conditional GET."""

    etag: str = ""
    last_modified: str = ""

    def headers(self) -> dict[str, str]:
        """Return the If-None-Match / If-Modified-Since headers for these validators."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


@dataclass(frozen=True)
class Download:
    """One answered GET: the body (None for 304) and the validators to send next time."""

    url: str
    status: int
    body: bytes | None
    validators: Validators

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def signature_url(config: BanlistConfig) -> str:
    """Return where the list's minisign signature is: config `signature_url`, else url + .minisig."""
    return config.signature_url or config.url + SIGNATURE_SUFFIX


class ClientTls(Protocol):
    """The TLS settings of a client block: the ban list's, push's, the fleet's pull."""

    ca_bundle: str
    client_cert: str
    client_key: str


def make_session(config: BanlistConfig | PushConfig | ClientTls) -> requests.Session:
    """Given the ban-list (or push, or pull) config, return a requests Session with its TLS settings.

    Verification stays on: with `ca_bundle` only that CA file is trusted, else the operating
    system's store (agent.platform.trust: not certifi's bundle). A
    client certificate is presented when `client_cert` is set (mutual TLS).
    """
    import requests

    from agent.banlist.deadline import DeadlineAdapter

    session = requests.Session()
    session.verify = config.ca_bundle or system_trust()
    if config.client_cert:
        session.cert = (config.client_cert, config.client_key) if config.client_key else config.client_cert
    session.headers["User-Agent"] = f"appban/{__version__}"
    adapter = DeadlineAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)  # push may use plain http to the loopback address
    session.hooks["response"].append(_https_only)
    return session


def _https_only(response: requests.Response, *args: object, **kwargs: object) -> None:
    """Refuse to follow a redirect off TLS (requests would follow one to http:// silently)."""
    if response.is_redirect:
        target = urljoin(response.url, response.headers["Location"])
        if not target.startswith("https://"):
            raise FetchError(f"redirected to {target}, which is not https")


def get(
    session: requests.Session,
    url: str,
    config: BanlistConfig,
    validators: Validators | None = None,
    max_bytes: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Download:
    """Given a URL, return its Download (status 200 or, with validators, 304).

    Retries with exponential backoff and jitter on 5xx answers and connection errors, up to
    `config.retries` times, all within `config.deadline` seconds. Raise FetchError (one line) on
    any other answer or failure, or when the deadline passes.
    """
    ends = time.monotonic() + config.deadline
    attempt = 0
    while True:
        try:
            return within(ends, config.deadline, session, url,
                           lambda: _get_once(session, url, config, validators, max_bytes or config.max_bytes))
        except FetchError as exc:
            if not _retryable(exc) or attempt >= config.retries:
                raise
            delay = backoff_delay(config.backoff, attempt)
            if time.monotonic() + delay >= ends:
                raise FetchError(f"{exc}; no time left to retry within the {config.deadline:g}s deadline") from None
            log_event(logger, logging.INFO, "banlist.fetch_retry", url=url, error=str(exc),
                      attempt=attempt + 1, retries=config.retries, delay=round(delay, 3))
            sleep(delay)
            attempt += 1


def within(ends: float, deadline: float, session: requests.Session, url: str, attempt: Callable[[], T]) -> T:
    """Run one request through `session` (made by make_session), cutting its connection when the
    monotonic time `ends` passes. Raise FetchError naming `deadline` (the seconds allowed) then."""
    from agent.banlist.deadline import TRANSPORT_ERRORS, DeadlineAdapter

    adapter = session.get_adapter(url)
    if not isinstance(adapter, DeadlineAdapter):
        return attempt()
    fired = threading.Event()

    def cut() -> None:
        fired.set()
        adapter.cut()

    timer = threading.Timer(max(ends - time.monotonic(), 0.0), cut)
    timer.daemon = True
    timer.start()
    try:
        result = attempt()
    except (FetchError, *TRANSPORT_ERRORS):
        if fired.is_set():
            raise FetchError(f"took longer than the {deadline:g}s deadline for the whole exchange") from None
        raise
    finally:
        timer.cancel()
    if fired.is_set():
        raise FetchError(f"took longer than the {deadline:g}s deadline for the whole exchange")
    return result


def backoff_delay(base: float, attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Return the wait before retry `attempt` (0-based): base·2^attempt, scaled by a random 50–100 %.

    The jitter keeps a fleet whose server just failed from coming back at the same instant.
    """
    return min(MAX_BACKOFF, base * 2**attempt) * (0.5 + rng() / 2)


def _retryable(exc: FetchError) -> bool:
    return exc.transient or (exc.status or 0) >= 500


def _get_once(
    session: requests.Session, url: str, config: BanlistConfig, validators: Validators | None, max_bytes: int
) -> Download:
    import requests  # already loaded by make_session: this only binds the name

    headers = validators.headers() if validators else {}
    try:
        # verify is passed per request: requests lets REQUESTS_CA_BUNDLE override a Session's
        # verify, and the administrator's ca_bundle must win over the environment.
        with session.get(url, headers=headers, timeout=config.timeout, stream=True, verify=session.verify,
                         allow_redirects=True) as response:
            if response.status_code == 304 and validators:
                return Download(url, 304, None, _validators(response, validators))
            if response.status_code != 200:
                reason = printable(response.reason or "")[:100]  # the server's words, shown to people
                raise FetchError(f"HTTP {response.status_code} {reason}".rstrip(), status=response.status_code)
            body = _read_capped(response, max_bytes)
            return Download(url, 200, body, _validators(response, Validators()))
    except requests.RequestException as exc:
        raise _describe(exc, config.timeout) from None


def _validators(response: requests.Response, previous: Validators) -> Validators:
    """Keep the server's new validators; a 304 may omit them, then the old ones still hold."""
    return Validators(
        etag=response.headers.get("ETag", previous.etag),
        last_modified=response.headers.get("Last-Modified", previous.last_modified),
    )


def _read_capped(response: requests.Response, max_bytes: int) -> bytes:
    """Read the body, refusing it as soon as it is known to exceed max_bytes."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"too large: {declared} bytes, over the {max_bytes}-byte limit")
    body = bytearray()
    for chunk in response.iter_content(CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise FetchError(f"too large: more than the {max_bytes}-byte limit")
    return bytes(body)


def _describe(exc: requests.RequestException, timeout: float) -> FetchError:
    """Turn a requests exception into a one-line FetchError a person can act on."""
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return FetchError(f"TLS error: {_innermost(exc)}")
    if isinstance(exc, requests.exceptions.ProxyError):
        return _transient(f"proxy error: {_innermost(exc)}")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return _transient(f"connect timed out after {timeout:g}s")
    if isinstance(exc, requests.exceptions.Timeout):
        return FetchError(f"timed out after {timeout:g}s waiting for the server")
    if isinstance(exc, requests.exceptions.ConnectionError):
        if _caused_by(exc, socket.gaierror):
            return _transient(f"DNS lookup failed: {_innermost(exc)}")
        if _caused_by(exc, ConnectionRefusedError):
            return _transient("connection refused (server down?)")
        if isinstance(exc, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in str(exc):
            return FetchError(f"transfer cut short: {_innermost(exc)}")
        return _transient(f"connection failed: {_innermost(exc)}")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return FetchError(f"transfer cut short: {_innermost(exc)}")
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return FetchError("too many redirects")
    return FetchError(f"request failed: {_innermost(exc)}")


def _transient(message: str) -> FetchError:
    return FetchError(message, transient=True)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, then what it wraps, outermost first (requests wraps urllib3, which wraps the
    socket or ssl error in `reason`, in its arguments or as the cause)."""
    chain = [exc]
    while len(chain) < 20:
        current = chain[-1]
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in current.args if isinstance(a, BaseException)), None)
        inner = inner or current.__cause__ or current.__context__
        if inner is None or inner in chain:
            break
        chain.append(inner)
    return chain


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    return any(isinstance(e, kind) for e in _chain(exc))


def _innermost(exc: BaseException) -> str:
    """The most specific message in the chain, on one line (the outer ones repeat the URL)."""
    text = str(_chain(exc)[-1]) or str(exc)
    return " ".join(text.split())[:300]
