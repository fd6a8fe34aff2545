"""The watchdog half of ban-list and push deadlines: an HTTPS adapter whose connections can be
shut down from another thread.

Why: requests' timeouts apply to each socket read, so a server sending a byte every second is
never timed out; `agent.banlist.fetch.within` arms a timer that calls `DeadlineAdapter.cut()` when
the whole exchange has taken too long. Kept apart from fetch.py so that module loads without
requests (which only the first download needs).
"""

from __future__ import annotations

import http.client
import socket
import weakref
from typing import Any

import urllib3
from requests.adapters import HTTPAdapter

TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError)
"""What a request fails with once its sockets are shut down (requests' own errors are OSErrors)."""


class DeadlineAdapter(HTTPAdapter):
    """requests' HTTP(S) adapter, with `cut()` to shut down its open connections from another thread.

    Why shut the socket down rather than close it: close() from another thread does not wake a
    thread blocked reading it on Linux, shutdown() does, and the reader then fails at once.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._open: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _watched_pool(urllib3.HTTPConnectionPool, urllib3.connection.HTTPConnection, self._open),
            "https": _watched_pool(urllib3.HTTPSConnectionPool, urllib3.connection.HTTPSConnection, self._open),
        }

    def cut(self) -> None:
        """Shut down every connection this adapter has open (their readers fail at once)."""
        for sock in list(self._open):
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the raw socket, under any TLS layer
            except OSError:
                pass  # already closed


def _watched_pool(pool: type, connection: type, opened: weakref.WeakSet[socket.socket]) -> type:
    """Return a subclass of `pool` whose connections put their sockets in `opened`: both of them,
    as objects (http.client drops conn.sock once a response owns it) — the TCP one during the TLS
    handshake (which can trickle too), the TLS one after it (wrapping detaches the TCP socket
    object from the file descriptor)."""

    class Connection(connection):  # type: ignore[misc,valid-type]
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            opened.add(sock)
            return sock

        def connect(self) -> None:
            super().connect()
            opened.add(self.sock)

    return type(f"Watched{pool.__name__}", (pool,), {"ConnectionCls": Connection})
