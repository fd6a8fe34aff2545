"""Read deadlines and a per-client connection cap for the fleet's HTTP listener.

Why a protocol subclass: uvicorn bounds concurrent connections (`limit_concurrency`, answered 503)
and idle keep-alive, but it has no deadline for a request's headers to arrive — its keep-alive
timer only runs between requests and is cancelled by the first byte, so a client sending one header
byte every few seconds (slowloris) holds a connection for ever, and a few hundred such clients hold
every slot. uvicorn's own hook for this is the protocol class (`uvicorn.Config(http=...)`); these
subclasses of its httptools protocol (the one uvicorn picks when httptools is installed, as the
fleet extra does) and of its h11 protocol change no parsing, they only add a timer per request
phase, followed through h11's state of the client's side or httptools' parser callbacks:

- waiting for or reading the request line and headers: `header_timeout` from the moment the
  connection opened or the previous answer was sent; then 408 and close.
- the body is arriving: `body_timeout`. The application's own body reader answers 408
  at `request_timeout` first; this deadline, a little later, also covers routes that answer without
  reading the body and a client that keeps trickling after the answer.
- the request is in: no read deadline (the answer is the application's business).

A client address may hold at most `per_client` connections (0: no cap, behind a reverse proxy that
sends everything from one address); more are answered 503 (over TLS: closed before the handshake,
which they would make the server pay for) and closed at once, so one address cannot take all
`max_connections` slots.

TLS is layered on here too, not by the server: uvicorn hands `ssl` to `loop.create_server`, whose
handshake bound is asyncio's fixed 60 s and whose connections reach the protocol (and the
connection counts above) only once the handshake is done — so a client that opened TCP and sent
nothing, or half a ClientHello, held a socket for a minute, uncounted. The protocol therefore
sees the plain TCP connection, counts it at once (against `per_client` and uvicorn's
`limit_concurrency`, both of which count `server_state.connections`) and wraps it in asyncio's
own TLS layer (`asyncio.sslproto.SSLProtocol`, what `loop.start_tls` uses, on either event loop)
with `header_timeout` as the handshake's bound. Why not `loop.start_tls` itself: it is a coroutine,
so the layer would be put in place one loop turn late, and uvloop delivers a ClientHello that came
with the connection to the protocol before that (it resumes reading after `connection_made` even
when the protocol paused it), losing the first bytes of the handshake.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from asyncio import sslproto
from typing import Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from agent.log import log_event

logger = logging.getLogger(__name__)

BODY_GRACE = 1.0
"""Seconds the listener's body deadline waits past `request_timeout`, so the application's own 408
(with its log line) is the answer a trickling client gets wherever the application reads the body."""


def _peer(transport: asyncio.BaseTransport) -> str | None:
    """The client's address (the host part of the peer name), or None (a Unix socket)."""
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, (tuple, list)) and peer else None


def _answer(status: str, message: str) -> bytes:
    """A complete HTTP/1.1 answer written outside h11 (which has not parsed a request yet)."""
    body = f'{{"error": "{message}"}}'.encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


class _Deadlines:
    """What both guarded protocols share: the per-client cap, one timer per phase and the cut-off.
    A subclass says which phase the client's side is in (`_phase_now`) and whether it has sent any
    byte of the request the deadline is for (`_started`). Mixed in before uvicorn's protocol."""

    header_timeout = 10.0
    body_timeout = 30.0 + BODY_GRACE
    per_client = 0
    tls: ssl.SSLContext | None = None
    """The server's TLS context: connections are wrapped in it here (None: plain HTTP)."""
    refused: Callable[[int], None] = staticmethod(lambda status: None)
    """Counts a connection cut off or turned away by its HTTP status (the fleet's refusal metric;
    a TLS handshake that timed out counts as 408, a connection refused before it as 503)."""
    _phase: str | None = None
    _deadline: asyncio.TimerHandle | None = None
    _address: str | None = None
    _handshaking: asyncio.Transport | None = None
    """The TCP transport while its TLS handshake runs (the protocol has no HTTP transport yet)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self._handshaking is not None:  # the TLS layer, its handshake done, hands over its transport
            self._handshaking = None
            self._serve(transport)
            return
        self._address = _peer(transport)
        if self.tls is None:
            self._serve(transport)
            return
        self.connections.add(self)  # type: ignore[attr-defined]
        if self._over_cap():
            transport.close()
            return
        self._handshaking = transport
        done = self.loop.create_future()  # type: ignore[attr-defined]
        done.add_done_callback(self._handshake_ended)
        layer = sslproto.SSLProtocol(self.loop, self, self.tls, done, server_side=True,  # type: ignore[attr-defined]
                                     ssl_handshake_timeout=self.header_timeout)
        transport.set_protocol(layer)
        layer.connection_made(transport)

    def _serve(self, transport: asyncio.Transport) -> None:
        """Start HTTP on `transport` (plain, or TLS once its handshake is done) under the cap and deadlines."""
        super().connection_made(transport)  # type: ignore[misc]
        if self.tls is None and self._over_cap():
            transport.write(_answer("503 Service Unavailable", "too many connections from this address"))
            transport.close()
            return
        self._advance()

    def _over_cap(self) -> bool:
        """Whether this connection (already counted) is one more than its address may hold; logged and counted."""
        if not self.per_client or self._address is None:
            return False
        held = sum(1 for other in self.connections  # type: ignore[attr-defined]
                   if getattr(other, "_address", None) == self._address)
        if held <= self.per_client:
            return False
        log_event(logger, logging.WARNING, "fleet.busy", client=self._address, connections=held - 1)
        self.refused(503)
        return True

    def _handshake_ended(self, done: asyncio.Future[None]) -> None:
        """Forget a connection whose TLS handshake failed or ran out of time (the layer closed it
        and, as it never handed over a transport, tells the protocol nothing else)."""
        error = None if done.cancelled() else done.exception()
        if error is None or self.transport is not None:  # type: ignore[attr-defined]
            return
        self._handshaking = None
        self.connections.discard(self)  # type: ignore[attr-defined]
        if isinstance(error, ConnectionAbortedError):  # the layer's handshake timeout
            log_event(logger, logging.WARNING, "fleet.slow_client", phase="tls", client=self._address)
            self.refused(408)
        else:
            log_event(logger, logging.INFO, "fleet.tls_failed", client=self._address,
                      error=" ".join(f"{type(error).__name__}: {error}".split())[:300])

    def shutdown(self) -> None:
        """uvicorn's graceful stop: a connection still in its handshake is simply closed."""
        if self._handshaking is not None:
            self._handshaking.close()
            self.connections.discard(self)  # type: ignore[attr-defined]
            return
        super().shutdown()  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        self._advance()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._advance()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self.transport is None:  # type: ignore[attr-defined]  # refused before TLS: HTTP never started
            self.connections.discard(self)  # type: ignore[attr-defined]
            return
        super().connection_lost(exc)  # type: ignore[misc]

    def _phase_now(self) -> str | None:
        raise NotImplementedError

    def _started(self) -> bool:
        raise NotImplementedError

    def _advance(self) -> None:
        """Re-arm the deadline when the client's side of the connection entered another phase."""
        transport = self.transport  # type: ignore[attr-defined]
        phase = self._phase_now()
        if phase == self._phase or transport is None or transport.is_closing():
            return
        self._cancel()
        self._phase = phase
        if phase is not None:
            seconds = self.header_timeout if phase == "headers" else self.body_timeout
            self._deadline = self.loop.call_later(seconds, self._expired)  # type: ignore[attr-defined]

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        """Cut off a client that did not finish its phase in time (an idle keep-alive connection
        that sent nothing is only closed)."""
        self._deadline = None
        transport = self.transport  # type: ignore[attr-defined]
        if transport.is_closing():
            return
        if self._phase == "body" or self._started():
            log_event(logger, logging.WARNING, "fleet.slow_client", phase=self._phase,
                      client=self.client[0] if self.client else None)  # type: ignore[attr-defined]
            self.refused(408)
            if self._phase == "headers":
                transport.write(_answer("408 Request Timeout", f"request headers not received within "
                                                               f"{self.header_timeout:g} s"))
        transport.close()


class GuardedH11Protocol(_Deadlines, H11Protocol):
    """uvicorn's h11 protocol with the deadlines; the phase is h11's state of the client's side."""

    def _phase_now(self) -> str | None:
        state = self.conn.their_state
        return "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None

    def _started(self) -> bool:
        return bool(self.conn.trailing_data[0])


def _httptools_protocol() -> type | None:
    """The guarded httptools protocol (uvicorn's faster C parser, the fleet extra installs it), or
    None where httptools is missing. Its phase is followed through the parser's callbacks."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class GuardedHttpToolsProtocol(_Deadlines, HttpToolsProtocol):  # type: ignore[misc,valid-type]
        _message: str | None = None  # the request being read: "headers", then "body"
        _pending = 0  # requests read in full and not answered yet
        _early = False  # the current request was answered before it was read in full
        _bytes = False  # a byte of the next request arrived

        def data_received(self, data: bytes) -> None:
            self._bytes = self._bytes or bool(data)
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._message = "headers"

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._message = "body"

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._message, self._bytes = None, False
            self._pending += 0 if self._early else 1
            self._early = False

        def on_response_complete(self) -> None:
            if self._message is not None:
                self._early = True
            else:
                self._pending = max(self._pending - 1, 0)
            super().on_response_complete()

        def _phase_now(self) -> str | None:
            if self._message == "body":
                return "body"
            return "headers" if self._pending == 0 else None

        def _started(self) -> bool:
            return self._bytes

    return GuardedHttpToolsProtocol


def guarded_protocol(header_timeout: float, request_timeout: float, per_client: int,
                     refused: Callable[[int], None], tls: ssl.SSLContext | None = None) -> type:
    """Return the protocol class for `uvicorn.Config(http=...)` with these limits, counting each
    connection it cuts off or turns away with `refused(status)`, serving TLS with `tls` when
    given (uvicorn itself must then get no `ssl_*` options): on httptools where it is installed
    (what uvicorn itself would pick), else on h11. Its `implementation` names which."""
    base = _httptools_protocol() or GuardedH11Protocol
    return type("FleetHttpProtocol", (base,), {
        "header_timeout": header_timeout, "body_timeout": request_timeout + BODY_GRACE, "per_client": per_client,
        "refused": staticmethod(refused), "tls": tls,
        "implementation": "h11" if base is GuardedH11Protocol else "httptools"})
