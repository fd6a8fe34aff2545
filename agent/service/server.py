"""The pull endpoint: central collectors and Prometheus read the agent's latest report.

Why the standard library's socketserver with a request reader of its own (`read_request`) rather
than http.server, waitress or cheroot: the endpoint serves four small read-only GETs and closes
every connection after one answer, so all it reads of HTTP is a request line and header fields
(no bodies, no keep-alive, no chunked coding). http.server imports http.client and with it the
email package, ssl and shutil: ~2.5 MiB of an idle service that must stay small (issue 14), and
libcrypto's 3.5 MiB more when nothing else maps it. A dependency would add code to audit. The
hardening:
- at most MAX_CONNECTIONS connections, and MAX_PER_CLIENT from one address, so clients from one
  address cannot take every slot (more are closed at once, logged as server.busy);
- a deadline for the whole exchange (REQUEST_DEADLINE, from accept to the last byte of the
  answer, TLS handshake included): one watchdog thread shuts down the socket of any connection
  past it, since a per-read timeout never fires for a client sending a header line every 5 s;
- at most MAX_HEADER_BYTES for the request line and headers together (431 past it), so memory is
  bounded by design: about MAX_CONNECTIONS × MAX_HEADER_BYTES plus the threads' stacks, whatever
  clients send;
- a strict grammar: a request line of three words and HTTP/1.x, header fields `token: value`
  (no folded lines); anything else is 400 (505 for another HTTP version);
- the TLS handshake done in the connection's own thread (a silent client cannot stall the
  accept loop), ssl imported only when TLS is configured, request bodies refused, GET and HEAD
  only (other methods 405, unknown ones 501), unknown paths 404, and a bearer token compared in
  constant time.
"""

from __future__ import annotations

import functools
import logging
import re
import socket
import socketserver
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from http import HTTPStatus
from typing import TYPE_CHECKING, BinaryIO, Callable, NamedTuple
from wsgiref.handlers import format_date_time

from agent.log import log_event
from agent.report.snapshot import Snapshot

try:  # the C function hmac.compare_digest is when OpenSSL is absent: importing hmac maps libcrypto
    from _operator import _compare_digest as compare_digest
except ImportError:  # another interpreter
    from hmac import compare_digest

if TYPE_CHECKING:
    import ssl

    from agent.report.metrics import SnapshotCollector

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0
"""Seconds for each read or write."""
REQUEST_DEADLINE = 10.0
"""Seconds for a whole connection: handshake, request, answer."""
MAX_CONNECTIONS = 32
MAX_PER_CLIENT = 4
MAX_HEADER_BYTES = 16 * 1024
"""The request line and all headers together: a GET with a bearer token needs under 1 KiB."""
DEFAULT_HOST = "127.0.0.1"
JSON = "application/json"


class ListenError(ValueError):
    """A `server.listen` value that is not `host:port` or `port`; one line naming it."""


def parse_listen(text: str) -> tuple[str, int]:
    """Given `host:port`, `[v6]:port` or `port`, return (host, port), host defaulting to 127.0.0.1.

    Raise ListenError if the port is missing or out of range.
    """
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]") if sep else DEFAULT_HOST
    try:
        number = int(port)
    except ValueError:
        raise ListenError(f"server.listen {text!r}: expected host:port, e.g. 127.0.0.1:9464") from None
    if not 0 <= number <= 65535:
        raise ListenError(f"server.listen {text!r}: port out of range")
    return host or DEFAULT_HOST, number


class Endpoint(socketserver.ThreadingTCPServer):
    """The HTTP(S) server; handlers read `snapshot()` and check `token`."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True  # a restarted service binds again at once, as http.server's does

    def __init__(self, address: tuple[str, int], token: str, snapshot: Callable[[], Snapshot],
                 tls: ssl.SSLContext | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._lock = threading.Lock()
        self._clients: Counter[str] = Counter()
        self._due: dict[socket.socket, tuple[float, socket.socket]] = {}
        """Accepted socket → (deadline, the socket to shut down: the TLS one once wrapped)."""
        self._closed = threading.Event()  # before binding: a failed bind calls server_close()
        self._refused = 0
        self._busy_logged = float("-inf")
        super().__init__(address, _Handler)
        self.token = token.encode()
        self.snapshot = snapshot
        self.tls = tls
        threading.Thread(target=self._watch_deadlines, name="appban-endpoint-deadlines", daemon=True).start()

    @functools.cached_property
    def collector(self) -> SnapshotCollector:
        """What /metrics renders, made at the first scrape: a service nobody scrapes does not
        load the metrics modules."""
        from agent.report.metrics import SnapshotCollector

        return SnapshotCollector(self.snapshot, lambda: datetime.now(timezone.utc))

    def process_request(self, request: socket.socket, client_address: tuple) -> None:
        """Start a handler thread, or drop the connection when MAX_CONNECTIONS are busy or its
        address already has MAX_PER_CLIENT."""
        client = client_address[0]
        with self._lock:
            admitted = len(self._due) < MAX_CONNECTIONS and self._clients[client] < MAX_PER_CLIENT
            if admitted:
                self._clients[client] += 1
                self._due[request] = (time.monotonic() + REQUEST_DEADLINE, request)
        if not admitted:
            self._log_busy(client)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release(request, client)
            raise

    def process_request_thread(self, request: socket.socket, client_address: tuple) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(request, client_address[0])

    def _log_busy(self, client: str) -> None:
        """Log refused connections at most once a second (with how many), so a flood of them
        cannot flood the log as well."""
        now = time.monotonic()
        with self._lock:
            self._refused += 1
            if now - self._busy_logged < 1.0:
                return
            refused, self._refused, self._busy_logged = self._refused, 0, now
        log_event(logger, logging.WARNING, "server.busy", client=client, refused=refused)

    def _release(self, request: socket.socket, client: str) -> None:
        with self._lock:
            self._due.pop(request, None)
            self._clients[client] -= 1
            if self._clients[client] <= 0:
                del self._clients[client]

    def _watch_deadlines(self) -> None:
        """Shut down the socket of every connection past REQUEST_DEADLINE (its thread then fails
        at once and frees the slot), until the server is closed."""
        while not self._closed.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [live for due, live in self._due.values() if due <= now]
            for sock in late:
                try:
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the raw socket, under any TLS layer
                except OSError:
                    pass  # already gone

    def active(self) -> int:
        """Return how many connections are being served."""
        with self._lock:
            return len(self._due)

    def server_close(self) -> None:
        self._closed.set()
        super().server_close()

    def finish_request(self, request: socket.socket, client_address: tuple) -> None:
        """Run in the connection's thread: set the timeout, do the TLS handshake, then serve."""
        request.settimeout(REQUEST_TIMEOUT)
        if self.tls is not None:
            try:
                accepted, request = request, self.tls.wrap_socket(request, server_side=True,
                                                                  do_handshake_on_connect=False)
                with self._lock:  # wrapping moved the descriptor: the watchdog must cut this one
                    due, _ = self._due[accepted]
                    self._due[accepted] = (due, request)
                request.do_handshake()
            except OSError as exc:  # ssl.SSLError is one
                log_event(logger, logging.INFO, "server.tls_failed", client=client_address[0], error=str(exc))
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: object, client_address: tuple) -> None:
        log_event(logger, logging.WARNING, "server.error", client=client_address[0], error=repr(sys.exc_info()[1]))

    def authorized(self, header: str | None) -> bool:
        """True when the Authorization header carries the token (constant-time comparison)."""
        scheme, _, offered = (header or "").partition(" ")
        return scheme.lower() == "bearer" and compare_digest(offered.strip().encode(), self.token)


class BadRequest(Exception):
    """A request refused before it is routed: `status` is the answer, the message its body."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class Request(NamedTuple):
    """What the endpoint reads of a request: its line, and its header fields by lower-case name
    (the first of repeated fields, as http.server's `headers.get` gave)."""

    line: str
    method: str
    target: str
    headers: dict[str, str]


_VERSION = re.compile(r"HTTP/(\d)\.\d")
_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""A field name is a token (RFC 9110 5.1, 5.6.2): a folded line or a space before the colon is
not. (The value is stripped with str.strip: a regex with optional spaces on both sides of it
backtracks quadratically on a long run of spaces, seconds for one 16 KiB header.)"""


def read_request(rfile: BinaryIO) -> Request | None:
    """Given a connection's buffered input, read the request line and header fields (at most
    MAX_HEADER_BYTES together, CRLF or LF line ends, latin-1 as RFC 9110 5.5 allows); return
    None if the client closes before the blank line that ends them.

    Raise BadRequest: 414 or 431 past MAX_HEADER_BYTES, 505 for an HTTP version other than 1.x,
    400 for anything else that is not a request line of three words or a `name: value` field.
    """
    left, lines = MAX_HEADER_BYTES, []
    while True:
        raw = rfile.readline(left)
        if not raw.endswith(b"\n"):
            if len(raw) < left:
                return None  # closed (or cut off by the deadline) mid-request
            status = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE if lines else HTTPStatus.REQUEST_URI_TOO_LONG
            raise BadRequest(status, f"request line and headers over {MAX_HEADER_BYTES} bytes")
        left -= len(raw)
        line = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        if not line and lines:
            break
        if line:  # RFC 9112 2.2: blank lines before the request line are ignored
            lines.append(line.decode("latin-1"))
    words = lines[0].split()
    version = _VERSION.fullmatch(words[-1]) if len(words) == 3 else None
    if version is None:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "bad request line")
    if version[1] != "1":
        raise BadRequest(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and HTTP/1.1")
    headers: dict[str, str] = {}
    for text in lines[1:]:
        name, colon, value = text.partition(":")
        if not colon or not _NAME.fullmatch(name):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "bad header field")
        headers.setdefault(name.lower(), value.strip(" \t"))  # RFC 9110 5.5: without the OWS around it
    return Request(lines[0], words[0], words[1], headers)


NOT_ALLOWED = frozenset({"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})
"""Methods HTTP defines that the endpoint refuses with 405 (others are 501, as http.server did)."""
TEXT = "text/plain; charset=utf-8"


class _Handler(socketserver.StreamRequestHandler):
    server: Endpoint
    timeout = REQUEST_TIMEOUT
    """Seconds for each read or write (StreamRequestHandler sets it on the socket)."""

    def handle(self) -> None:
        """Read one request, answer it, and let the connection close."""
        try:
            request = read_request(self.rfile)
        except BadRequest as exc:
            self._send(None, exc.status, f"{exc}\n".encode())
            return
        except TimeoutError:
            log_event(logger, logging.DEBUG, "server.request", client=self.client_address[0], line="timed out")
            return
        if request is not None:
            self._send(request, *self._answer(request))

    def _answer(self, request: Request) -> tuple[HTTPStatus, bytes, str, dict[str, str]]:
        """Return (status, body, content type, extra headers) for a request."""
        if request.method in NOT_ALLOWED:
            return HTTPStatus.METHOD_NOT_ALLOWED, b"only GET and HEAD are allowed\n", TEXT, {"Allow": "GET, HEAD"}
        if request.method not in ("GET", "HEAD"):
            return HTTPStatus.NOT_IMPLEMENTED, b"unsupported method\n", TEXT, {}
        headers = request.headers
        if headers.get("content-length", "0") not in ("", "0") or headers.get("transfer-encoding"):
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"request bodies are not accepted\n", TEXT, {}
        path = request.target.split("?", 1)[0]
        if path == "/healthz":
            return HTTPStatus.OK, b"ok\n", TEXT, {}
        if path not in _ROUTES:
            return HTTPStatus.NOT_FOUND, b"not found\n", TEXT, {}
        if not self.server.authorized(headers.get("authorization")):
            return HTTPStatus.UNAUTHORIZED, b"bearer token required\n", TEXT, {"WWW-Authenticate": 'Bearer realm="appban"'}
        return (*_ROUTES[path](self.server), {})

    def _send(self, request: Request | None, status: HTTPStatus, body: bytes, content_type: str = TEXT,
              extra: dict[str, str] | None = None) -> None:
        """Write the answer to `request` (None: one that could not be read), as HTTP/1.0, so
        the connection closes after it; a HEAD gets no body. The `Server` header names the
        product only: a version number only helps whoever scans for old ones."""
        fields = {"Server": "appban", "Date": format_date_time(time.time()), "Content-Type": content_type,
                  "Content-Length": str(len(body)), "Cache-Control": "no-store", **(extra or {})}
        head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
        head_only = request is not None and request.method == "HEAD"
        self.wfile.write(f"HTTP/1.0 {status.value} {status.phrase}\r\n{head}\r\n".encode("latin-1")
                         + (b"" if head_only else body))
        log_event(logger, logging.DEBUG, "server.request", client=self.client_address[0],
                  line=f'"{request.line if request else "-"}" {status.value} {len(body)}')


def _report(server: Endpoint) -> tuple[HTTPStatus, bytes, str]:
    snapshot = server.snapshot()
    if not snapshot.report_json:
        return HTTPStatus.SERVICE_UNAVAILABLE, b"no scan has finished yet\n", TEXT
    return HTTPStatus.OK, snapshot.report_json, JSON


def _inventory(server: Endpoint) -> tuple[HTTPStatus, bytes, str]:
    snapshot = server.snapshot()
    if not snapshot.inventory_json:
        return HTTPStatus.SERVICE_UNAVAILABLE, b"no scan has finished yet\n", TEXT
    return HTTPStatus.OK, snapshot.inventory_json, JSON


def _metrics(server: Endpoint) -> tuple[HTTPStatus, bytes, str]:
    from agent.exposition import CONTENT_TYPE, render

    return HTTPStatus.OK, render(server.collector), CONTENT_TYPE


_ROUTES = {"/v1/report": _report, "/v1/inventory": _inventory, "/metrics": _metrics}


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """Return a server TLS context (TLS 1.2+) for the configured certificate and key (the agent
    endpoint's, and the fleet listener's under its client-CA setting).

    Raise OSError (ssl.SSLError is one) if they cannot be loaded.
    """
    import ssl  # here: ssl maps libssl and libcrypto, which a service without TLS does not need

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key or None)
    return context


def start(listen: str, token: str, snapshot: Callable[[], Snapshot], tls: ssl.SSLContext | None) -> Endpoint:
    """Bind the endpoint and serve it from a background thread; return it (call shutdown() to stop).

    Raise ListenError for a bad address and OSError if the port cannot be bound.
    """
    endpoint = Endpoint(parse_listen(listen), token, snapshot, tls)
    threading.Thread(target=endpoint.serve_forever, name="appban-endpoint", daemon=True).start()
    host, port = endpoint.server_address[:2]
    log_event(logger, logging.INFO, "server.listening", address=f"{host}:{port}", tls=tls is not None)
    return endpoint
