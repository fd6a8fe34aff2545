"""What the MDM connectors (amapi, intune, jamf) share: one HTTP client with the cloud APIs'
manners, a JWT signer, and the collector that turns a connector's pages into an inventory.

Why hand-written and not each vendor's SDK: the three APIs need the same few things — a bearer
token cached until it expires, paging, `429` with `Retry-After`, back-off on `5xx` — and the SDKs
(google-api-python-client, msgraph-sdk) are large and each brings its own retry and transport
stack that tests could not aim at a stand-in server as simply. `requests` is already a core
dependency; JWTs are signed with `cryptography`, also one already.

Tokens and secrets never appear in a log line or an error message: errors name the connector,
the method and the path, and the status and error code the API returned.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol
from urllib.parse import quote, urlsplit

from agent.inventory.base import Collected
from agent.log import log_event
from agent.model import CollectorError

if TYPE_CHECKING:  # requests is imported when a connector runs: a plain check must not pay for it
    import requests

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
"""Tries per request (the first and five retries) before a throttled or failing page is an error."""
BACKOFF = 1.0
"""Seconds before the first retry of a 5xx or a dropped connection; doubled per retry, jittered."""
MAX_WAIT = 120.0
"""The longest a `Retry-After` is honoured; a server asking for more makes the page an error."""
EXPIRY_MARGIN = 60.0
"""A token is renewed this many seconds before it expires, so no request carries a dying one."""
MAX_ERROR_TEXT = 200
MAX_BODY = 256 * 1024 * 1024
"""The largest JSON answer read (a page of 100 devices with 80 apps each is about 3 MB); a body
that grows past it, or is still arriving after READ_DEADLINE timeouts, is an error, never a hang."""
READ_DEADLINE = 10
_CHUNK = 1 << 20


class ApiError(Exception):
    """A request that failed for good; the message is one line (connector, call, what went wrong)."""


class CredentialError(ApiError):
    """The API refused the credential (revoked, expired, wrong secret, missing permission)."""


def segment(text: str) -> str:
    """Return one URL path segment with everything but unreserved characters escaped, so an
    identifier holding `/`, `?`, `#`, spaces or non-ASCII text cannot change the path."""
    return quote(text, safe="")


def resource_path(name: str) -> str:
    """Return a resource name such as `enterprises/E/devices/D` with each segment escaped."""
    return "/".join(segment(part) for part in name.split("/"))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed_jwt(claims: dict[str, Any], private_key_pem: bytes, header: dict[str, str] | None = None) -> str:
    """Given claims and a PEM RSA private key, return the RS256-signed JWT (RFC 7515 compact form).

    Raise ValueError if the key cannot be read or is not RSA.
    """
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the private key is not an RSA key")
    head = {"alg": "RS256", "typ": "JWT", **(header or {})}
    signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def read_secret(path: str, what: str) -> bytes:
    """Return a credential file's bytes. Raise CredentialError naming the file (never its content)."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise CredentialError(f"{what} {path}: cannot read: {exc.strerror or exc}") from None


@dataclass
class Token:
    """A bearer token and the monotonic time it expires at."""

    value: str
    expires: float


TokenFetcher = Callable[["ApiClient"], Token]
"""Requests a new token, using the client's `request(..., auth=False)` so it gets the same retries."""


def retry_after(response: requests.Response, now: Callable[[], float] = time.time) -> float | None:
    """Return the seconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now())
    except (TypeError, ValueError):
        return None


def _api_message(response: requests.Response) -> str:
    """The error code and text an API put in its body (Google, Graph and OAuth shapes), cut short."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):  # Google {"error": {"status", "message"}}, Graph {"error": {"code", "message"}}
        text = " ".join(str(error.get(k, "")) for k in ("status", "code", "message") if error.get(k))
    elif isinstance(error, str):  # OAuth {"error": "invalid_grant", "error_description": "..."}
        text = f"{error} {body.get('error_description', '')}".strip()
    else:
        text = str(body.get("httpStatus", "")) + " " + str(body.get("errors", ""))[:100]
    return " ".join(text.split())[:MAX_ERROR_TEXT]


class ApiClient:
    """One connector's HTTP session: bearer token cached until expiry (renewed once on a 401),
    retries on 429/5xx/dropped connections, every call with a timeout, no redirects followed
    (a redirect would carry the token elsewhere)."""

    def __init__(
        self, name: str, base_url: str, fetch_token: TokenFetcher, timeout: float, ca_bundle: str = "",
        sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        import requests

        self.timeout = timeout
        self.session = requests.Session()
        self.verify: str | bool = ca_bundle or True
        """Passed with each request: a session's own `verify` loses to REQUESTS_CA_BUNDLE."""
        self.requests_made = 0
        self._fetch_token = fetch_token
        self._token: Token | None = None
        self._sleep, self._clock = sleep, clock

    def url(self, path: str) -> str:
        """Return the absolute URL of an API path (already escaped)."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def same_origin(self, url: str) -> bool:
        """Whether `url` is on the API's own scheme, host and port: a paging link elsewhere would
        be handed the bearer token."""
        mine, theirs = urlsplit(self.base_url), urlsplit(url)
        return (mine.scheme, mine.netloc) == (theirs.scheme, theirs.netloc)

    def token(self) -> str:
        """Return a bearer token, requesting a new one when there is none or it is about to expire."""
        if self._token is None or self._clock() >= self._token.expires - EXPIRY_MARGIN:
            self._token = self._fetch_token(self)
            log_event(logger, logging.INFO, "mdm.token", connector=self.name,
                      expires_in=round(self._token.expires - self._clock()))
        return self._token.value

    def request(self, method: str, url: str, *, auth: bool = True, **kwargs: Any) -> requests.Response:
        """Send one request and return the successful response (2xx).

        Raise CredentialError on 401/403 (after one token renewal), ApiError on any other error
        status, on retries exhausted, or on a `Retry-After` longer than MAX_WAIT.
        """
        import requests

        what = f"{self.name}: {method} {urlsplit(url).path}"
        renewed = False
        extra_headers = kwargs.pop("headers", None) or {}
        for attempt in range(MAX_ATTEMPTS):
            headers = dict(extra_headers)
            if auth:
                headers["Authorization"] = f"Bearer {self.token()}"
            try:
                self.requests_made += 1
                response = self.session.request(method, url, headers=headers, timeout=self.timeout,
                                                verify=self.verify, allow_redirects=False, **kwargs)
            except requests.RequestException as exc:
                if attempt + 1 == MAX_ATTEMPTS:
                    raise ApiError(f"{what}: {type(exc).__name__} after {MAX_ATTEMPTS} tries") from None
                self._wait(what, attempt, None, type(exc).__name__)
                continue
            status = response.status_code
            if status < 300:
                return response
            if status == 401 and auth and not renewed:
                self._token, renewed = None, True  # expired early or rotated: one fresh token, then give up
                continue
            if status in (401, 403):
                raise CredentialError(f"{what}: HTTP {status}: credential refused (revoked, expired or "
                                      f"lacking permission) {_api_message(response)}".rstrip())
            if (status == 429 or status >= 500) and attempt + 1 < MAX_ATTEMPTS:
                self._wait(what, attempt, retry_after(response), f"HTTP {status}")
                continue
            raise ApiError(f"{what}: HTTP {status} {_api_message(response)}".rstrip())
        raise ApiError(f"{what}: still failing after {MAX_ATTEMPTS} tries")

    def _wait(self, what: str, attempt: int, asked: float | None, why: str) -> None:
        """Sleep before a retry: what `Retry-After` asked, else exponential back-off with jitter."""
        if asked is not None and asked > MAX_WAIT:
            raise ApiError(f"{what}: {why}, Retry-After {asked:.0f} s is longer than {MAX_WAIT:.0f} s")
        delay = asked if asked is not None else BACKOFF * 2 ** attempt * (0.5 + random.random() / 2)
        log_event(logger, logging.WARNING, "mdm.retry", connector=self.name, call=what, reason=why,
                  wait=round(delay, 2))
        self._sleep(delay)

    def get_json(self, url: str, params: Any = None) -> dict[str, Any]:
        """GET a JSON object. Raise ApiError as `request` does, or when the body is not a JSON object."""
        return self._json("GET", url, params=params)

    def send_json(self, method: str, url: str, body: Any, params: Any = None) -> dict[str, Any]:
        """POST/PATCH a JSON body and return the JSON object answered."""
        return self._json(method, url, json=body, params=params)

    def _json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        what = f"{self.name}: {method} {urlsplit(url).path}"
        response = self.request(method, url, stream=True, **kwargs)
        return _json_object(self.body(response, what), what)

    def body(self, response: requests.Response, what: str) -> bytes:
        """Read a streamed body within MAX_BODY bytes and READ_DEADLINE timeouts. Raise ApiError."""
        import requests

        deadline, chunks, size = self._clock() + self.timeout * READ_DEADLINE, [], 0
        try:
            for chunk in response.iter_content(_CHUNK):
                size += len(chunk)
                if size > MAX_BODY:
                    raise ApiError(f"{what}: the answer is larger than {MAX_BODY >> 20} MiB")
                if self._clock() > deadline:
                    raise ApiError(f"{what}: the answer was still arriving after {self.timeout * READ_DEADLINE:.0f} s")
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise ApiError(f"{what}: the answer was cut short ({type(exc).__name__})") from None
        finally:
            response.close()
        return b"".join(chunks)


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise ApiError(f"{what}: the answer is not JSON") from None
    if not isinstance(data, dict):
        raise ApiError(f"{what}: the answer is not a JSON object")
    return data


def token_request(client: ApiClient, url: str, form: dict[str, str], what: str) -> Token:
    """POST an OAuth token request (form-encoded) and return the Token it answers.

    Raise CredentialError when the endpoint refuses it (`invalid_client`, `invalid_grant`: a
    revoked key or a wrong secret answer 400 or 401) or answers no token; ApiError when it
    cannot be reached."""
    try:
        response = client.request("POST", url, auth=False, data=form, stream=True)
        answer = _json_object(client.body(response, what), what)
    except ApiError as exc:
        if "HTTP 4" not in str(exc):
            raise
        raise CredentialError(f"{what} refused: {exc}") from None
    return expiring(answer, time.monotonic, what)


def expiring(data: dict[str, Any], clock: Callable[[], float], what: str) -> Token:
    """Given an OAuth token answer (`access_token`, `expires_in`), return the Token.
    Raise CredentialError if it holds no token."""
    value = data.get("access_token")
    if not isinstance(value, str) or not value:
        raise CredentialError(f"{what}: the token answer holds no access_token")
    try:
        lifetime = float(data.get("expires_in", 300))
    except (TypeError, ValueError):
        lifetime = 300.0
    return Token(value, clock() + lifetime)


class Connector(Protocol):
    """An MDM connector: reads the MDM page by page; each page is devices, apps and errors."""

    def pages(self) -> Iterator[Collected]:
        """Yield what each page read; a failure ends the iteration with one error in the last page."""


def drain(connector: Connector) -> Collected:
    """Return every page a connector yields, merged (what the check and the fleet want)."""
    merged = Collected()
    for page in connector.pages():
        merged.apps += page.apps
        merged.devices += page.devices
        merged.errors += page.errors
        merged.notes += page.notes
    merged.notes = list(dict.fromkeys(merged.notes))
    return merged


def failed(connector: str, exc: ApiError) -> Collected:
    """The page that stops a connector: one error, logged once; what was read before stays."""
    log_event(logger, logging.ERROR, "mdm.failed", connector=connector, error=str(exc))
    return Collected(errors=[CollectorError(connector, str(exc))])
