"""Read deadlines and a per-client connection cap for the fleet's HTTP listener.

Why a protocol subclass: uvicorn bounds concurrent connections (`limit_concurrency`, answered 503)
and idle keep-alive, but it has no deadline for a request's headers to arrive — its keep-alive
timer only runs between requests and is cancelled by the first byte, so a client sending one header
byte every few seconds (slowloris) holds a connection for ever, and a few hundred such clients hold
every slot. uvicorn's own hook for this is the protocol class (`uvicorn.Config(http=...)`); this
subclass of its h11 protocol changes no parsing, it only adds a timer per request phase, driven by
h11's own state of the client's side of the connection:

- `IDLE` (waiting for or reading the request line and headers): `header_timeout` from the moment
  the connection opened or the previous answer was sent; then 408 and close.
- `SEND_BODY` (the body is arriving): `body_timeout`. The application's own body reader answers 408
  at `request_timeout` first; this deadline, a little later, also covers routes that answer without
  reading the body and a client that keeps trickling after the answer.
- the request is in: no read deadline (the answer is the application's business).

A client address may hold at most `per_client` connections (0: no cap, behind a reverse proxy that
sends everything from one address); more are answered 503 and closed at once, so one address cannot
take all `max_connections` slots. TLS handshakes happen before a protocol sees the connection; asyncio
bounds them to 60 s.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from agent.log import log_event

logger = logging.getLogger(__name__)

BODY_GRACE = 1.0
"""Seconds the listener's body deadline waits past `request_timeout`, so the application's own 408
(with its log line) is the answer a trickling client gets wherever the application reads the body."""


def _answer(status: str, message: str) -> bytes:
    """A complete HTTP/1.1 answer written outside h11 (which has not parsed a request yet)."""
    body = f'{{"error": "{message}"}}'.encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a read deadline per request phase and a per-client cap. The
    limits are class attributes, set by `guarded_protocol`, since uvicorn builds the protocol itself."""

    header_timeout = 10.0
    body_timeout = 30.0 + BODY_GRACE
    per_client = 0
    refused: Callable[[int], None] = staticmethod(lambda status: None)
    """Counts a connection cut off or turned away by its HTTP status (the fleet's refusal metric)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: str | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        if self.per_client and address is not None:
            held = sum(1 for other in self.connections if other.client and other.client[0] == address)
            if held > self.per_client:
                log_event(logger, logging.WARNING, "fleet.busy", client=address, connections=held - 1)
                self.refused(503)
                transport.write(_answer("503 Service Unavailable", "too many connections from this address"))
                transport.close()
                return
        self._advance()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._advance()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._advance()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _advance(self) -> None:
        """Re-arm the deadline when the client's side of the connection entered another phase."""
        state = self.conn.their_state
        phase = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if phase == self._phase or self.transport.is_closing():
            return
        self._cancel()
        self._phase = phase
        if phase is not None:
            seconds = self.header_timeout if phase == "headers" else self.body_timeout
            self._deadline = self.loop.call_later(seconds, self._expired)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        """Cut off a client that did not finish its phase in time (an idle keep-alive connection
        that sent nothing is only closed)."""
        self._deadline = None
        if self.transport.is_closing():
            return
        started = self._phase == "body" or bool(self.conn.trailing_data[0])
        if started:
            log_event(logger, logging.WARNING, "fleet.slow_client", phase=self._phase,
                      client=self.client[0] if self.client else None)
            self.refused(408)
            if self._phase == "headers":
                self.transport.write(_answer("408 Request Timeout", f"request headers not received within "
                                                                     f"{self.header_timeout:g} s"))
        self.transport.close()


def guarded_protocol(header_timeout: float, request_timeout: float, per_client: int,
                     refused: Callable[[int], None]) -> type[GuardedH11Protocol]:
    """Return the protocol class for `uvicorn.Config(http=...)` with these limits, counting each
    connection it cuts off or turns away with `refused(status)`."""
    return type("FleetH11Protocol", (GuardedH11Protocol,), {
        "header_timeout": header_timeout, "body_timeout": request_timeout + BODY_GRACE, "per_client": per_client,
        "refused": staticmethod(refused)})
