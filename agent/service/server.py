"""The pull endpoint: central collectors and Prometheus read the agent's latest report.

Why the standard library's ThreadingHTTPServer (hardened here) rather than waitress or cheroot:
the endpoint serves four small read-only GETs, so a dependency would add code to audit and
memory to an agent that must stay tiny, while the hardening it needs is short:
- at most MAX_CONNECTIONS connections, and MAX_PER_CLIENT from one address, so clients from one
  address cannot take every slot (more are closed at once, logged as server.busy);
- a deadline for the whole exchange (REQUEST_DEADLINE, from accept to the last byte of the
  answer, TLS handshake included): one watchdog thread shuts down the socket of any connection
  past it, since a per-read timeout never fires for a client sending a header line every 5 s;
- at most MAX_HEADER_BYTES for the request line and headers together (stdlib: 100 headers of
  64 KiB each, 6.4 MB per connection), so memory is bounded by design: about
  MAX_CONNECTIONS × MAX_HEADER_BYTES plus the threads' stacks, whatever clients send;
- the TLS handshake done in the connection's own thread (a silent client cannot stall the
  accept loop), request bodies refused, GET only (others 405), unknown paths 404, and a bearer
  token compared in constant time.
"""

from __future__ import annotations

import functools
import hmac
import http.client
import logging
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Callable

from agent.log import log_event
from agent.report.snapshot import Snapshot

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

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


class Endpoint(ThreadingHTTPServer):
    """The HTTP(S) server; handlers read `snapshot()` and check `token`."""

    daemon_threads = True
    block_on_close = False

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

    def server_bind(self) -> None:
        """Bind as HTTPServer does, without its `socket.getfqdn` of the address: the name is
        used by nothing here (only CGI handlers read it), and the lookup is a reverse DNS query
        at start-up (for 0.0.0.0, of the host name) that also loads the IDNA codec."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @functools.cached_property
    def registry(self) -> CollectorRegistry:
        """The metrics registry, built at the first scrape: prometheus_client costs ~5 MB of the
        service's memory, which a service nobody scrapes should not pay."""
        from agent.report.metrics import make_registry

        return make_registry(self.snapshot, lambda: datetime.now(timezone.utc))

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
            except (OSError, ssl.SSLError) as exc:
                log_event(logger, logging.INFO, "server.tls_failed", client=client_address[0], error=str(exc))
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: object, client_address: tuple) -> None:
        log_event(logger, logging.WARNING, "server.error", client=client_address[0], error=repr(sys.exc_info()[1]))

    def authorized(self, header: str | None) -> bool:
        """True when the Authorization header carries the token (constant-time comparison)."""
        scheme, _, offered = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), self.token)


class _BoundedReader:
    """The request's input, refusing to give more than MAX_HEADER_BYTES of request line and
    headers (LineTooLong, which http.server answers 431 for headers)."""

    def __init__(self, raw: object) -> None:
        self._raw = raw
        self._left = MAX_HEADER_BYTES

    def readline(self, limit: int = -1) -> bytes:
        if self._left <= 0:
            raise http.client.LineTooLong(f"request line and headers over {MAX_HEADER_BYTES} bytes")
        budget = self._left if limit < 0 else min(limit, self._left)
        line = self._raw.readline(budget)  # type: ignore[attr-defined]
        self._left -= len(line)
        return line

    def __getattr__(self, name: str) -> object:
        return getattr(self._raw, name)


class _Handler(BaseHTTPRequestHandler):
    server: Endpoint
    server_version = "appban"
    sys_version = ""
    timeout = REQUEST_TIMEOUT

    def setup(self) -> None:
        super().setup()
        self.rfile = _BoundedReader(self.rfile)  # type: ignore[assignment]

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches on
        if self.headers.get("Content-Length", "0") not in ("", "0") or self.headers.get("Transfer-Encoding"):
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"request bodies are not accepted\n")
            return
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n")
            return
        if path not in _ROUTES:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n")
            return
        if not self.server.authorized(self.headers.get("Authorization")):
            self._send(HTTPStatus.UNAUTHORIZED, b"bearer token required\n",
                       extra={"WWW-Authenticate": 'Bearer realm="appban"'})
            return
        status, body, content_type = _ROUTES[path](self.server)
        self._send(status, body, content_type)

    do_HEAD = do_GET  # the same status and headers, no body (_send leaves it out for HEAD)

    def _not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"only GET and HEAD are allowed\n", extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def version_string(self) -> str:
        """The `Server` header: the product only (http.server would send "appban " with a
        trailing space, and a version number only helps whoever scans for old ones)."""
        return "appban"

    def _send(self, status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8",
              extra: dict[str, str] | None = None) -> None:
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log_event(logger, logging.DEBUG, "server.request", client=self.client_address[0], line=format % args)


def _report(server: Endpoint) -> tuple[HTTPStatus, bytes, str]:
    snapshot = server.snapshot()
    if not snapshot.report_json:
        return HTTPStatus.SERVICE_UNAVAILABLE, b"no scan has finished yet\n", "text/plain; charset=utf-8"
    return HTTPStatus.OK, snapshot.report_json, JSON


def _inventory(server: Endpoint) -> tuple[HTTPStatus, bytes, str]:
    snapshot = server.snapshot()
    if not snapshot.inventory_json:
        return HTTPStatus.SERVICE_UNAVAILABLE, b"no scan has finished yet\n", "text/plain; charset=utf-8"
    return HTTPStatus.OK, snapshot.inventory_json, JSON


def _metrics(server: Endpoint) -> tuple[HTTPStatus, bytes, str]:
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    return HTTPStatus.OK, generate_latest(server.registry), CONTENT_TYPE_LATEST


_ROUTES = {"/v1/report": _report, "/v1/inventory": _inventory, "/metrics": _metrics}


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """Return a server TLS context (TLS 1.2+) for the configured certificate and key.

    Raise OSError or ssl.SSLError if they cannot be loaded.
    """
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
