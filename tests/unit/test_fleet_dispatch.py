"""The fleet's ASGI entry point: `POST /v1/reports` goes straight to the push handler, everything
else (other methods on that path, other paths, the lifespan) through Starlette as before."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from agent.fleet.app import PUSH_PATH, push_first


def call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one ASGI call with an empty body; return the messages the app sent."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def http(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
            "raw_path": path.encode(), "root_path": "", "scheme": "http", "query_string": b"", "headers": [],
            "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8470)}


def test_pushes_skip_starlette_and_the_rest_goes_through_it() -> None:
    handled: list[str] = []

    async def reports(request: Request) -> Response:
        handled.append(f"direct {request.method} {request.url.path}")
        return PlainTextResponse("pushed")

    async def routed(request: Request) -> Response:
        handled.append(f"starlette {request.method} {request.url.path}")
        return PlainTextResponse("routed")

    starlette = Starlette(routes=[Route(PUSH_PATH, routed, methods=["POST"]), Route("/healthz", routed)])
    app = push_first(starlette, reports)

    pushed = call(app, http("POST", PUSH_PATH))
    assert pushed[0]["status"] == 200 and pushed[1]["body"] == b"pushed"
    assert call(app, http("GET", PUSH_PATH))[0]["status"] == 405  # Starlette's answer, as before
    assert call(app, http("POST", f"{PUSH_PATH}/x"))[0]["status"] == 404
    assert call(app, http("GET", "/healthz"))[1]["body"] == b"routed"
    assert handled == [f"direct POST {PUSH_PATH}", "starlette GET /healthz"]
