"""The fleet's HTTP face, a Starlette application: ingest (`/v1/enroll`, `/v1/reports`), the
read-only JSON API (`/api/v1/…`, described by `/api/v1/openapi.json`), the web pages and `/metrics`.

Every route but `/healthz` needs a credential: the enroll secret to enroll, a device token to push
(one's own reports only), the admin token (header or web session) to read, the admin or metrics
token for `/metrics`. Bodies are read with a hard size limit; database work runs in Starlette's
thread pool so a slow query never stalls the event loop.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import anyio
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.config import interval_seconds
from agent.fleet import query
from agent.fleet import web
from agent.fleet.auth import bearer, same
from agent.fleet.config import FleetConfig
from agent.fleet.ingest import Pushed, RefusedReport, read_report, report_inventory
from agent.fleet.metrics import Counters, FleetCollector, families, metric_facts
from agent.fleet.openapi import OPENAPI
from agent.fleet.store import Ingested, Store, scoped_key
from agent.fleet.tables import ID
from agent.fleet.verdict import DeviceVerdict, Policy, judge
from agent.log import log_event
from agent.printable import printable

logger = logging.getLogger(__name__)

MAX_ENROLL_BODY = 4096
TOKEN_CACHE_SECONDS = 60.0
"""How long a device token, once checked, is trusted without asking the database again (a token
replaced by re-enrollment keeps working on a server that cached it for at most this long)."""
TOKEN_CACHE_SIZE = 100_000
JSON_TYPE = "application/json"


@dataclass
class Fleet:
    """What the routes share: config, store, secrets and the policy in force (replaced on refresh)."""

    config: FleetConfig
    store: Store
    admin_token: str
    policy: Policy
    metrics_token: str = ""
    counters: Counters = field(default_factory=Counters)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)

    def cached_device(self, token: str) -> str | None:
        """The device of a token checked less than TOKEN_CACHE_SECONDS ago, else None."""
        cached = self._tokens.get(token)
        return cached[0] if cached is not None and cached[1] > time.monotonic() else None

    def device_for(self, token: str) -> str | None:
        """The device a token belongs to (None: unknown), from a short-lived cache or the store."""
        device = self.cached_device(token)
        if device is not None:
            return device
        device = self.store.device_for_token(token)
        if device is not None:
            if len(self._tokens) >= TOKEN_CACHE_SIZE:
                self._tokens.clear()
            self._tokens[token] = (device, time.monotonic() + TOKEN_CACHE_SECONDS)
        return device

    @property
    def stale_after(self) -> float:
        return interval_seconds(self.config.stale_after)

    def enroll_secret(self) -> str:
        """The current enroll secret, read on each enrollment so a rotation needs no restart."""
        try:
            return self.config.enroll_secret_path().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return ""

    def entries(self) -> list[str]:
        return [e.id for e in self.policy.banlist.entries]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _refuse(fleet: Fleet, request: Request, status: int, message: str, device: str | None = None) -> JSONResponse:
    """Answer a refused request with one JSON line and log it (control characters escaped)."""
    fleet.counters.count("refused", str(status))
    log_event(logger, logging.WARNING, "ingest.refused", status=status, device=printable(device) if device else None,
              reason=printable(message), client=request.client.host if request.client else None,
              path=request.url.path)
    return _error(status, message)


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """Return the request body, refusing one longer than `limit` (413) before reading it all, and
    one that takes longer than `timeout` seconds to arrive (408: a client trickling bytes)."""
    declared = request.headers.get("content-length", "")
    if declared and (not declared.isdigit() or int(declared) > limit):
        raise RefusedReport(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RefusedReport(413, f"body larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RefusedReport(408, f"body not received within {timeout:g} s") from None
    return b"".join(chunks)


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= ID and value.isprintable() and value.strip() == value


class Ingest:
    """The two routes agents call: enroll with the secret, push reports with the device token."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    async def enroll(self, request: Request) -> Response:
        fleet = self.fleet
        try:
            data = json.loads(await read_body(request, MAX_ENROLL_BODY, fleet.config.request_timeout))
        except RefusedReport as exc:
            return _refuse(fleet, request, exc.status, str(exc))
        except (ValueError, UnicodeDecodeError):
            return _refuse(fleet, request, 400, "enroll body is not JSON")
        if not isinstance(data, dict) or not same(str(data.get("secret", "")), fleet.enroll_secret()):
            return _refuse(fleet, request, 401, "wrong enroll secret")
        device = data.get("device")
        if not _valid_id(device):
            return _refuse(fleet, request, 422, f"device must be a printable id of 1 to {ID} characters")
        token = await run_in_threadpool(fleet.store.enroll, device, time.time())
        log_event(logger, logging.INFO, "fleet.enrolled", device=device,
                  client=request.client.host if request.client else None)
        return JSONResponse({"device": device, "token": token})

    async def reports(self, request: Request) -> Response:
        """Authenticate the device, read the report, then store it (fast path first)."""
        fleet = self.fleet
        token = bearer(request.headers.get("authorization"))
        device = (fleet.cached_device(token) or await run_in_threadpool(fleet.device_for, token)) if token else None
        if device is None:
            return _refuse(fleet, request, 401, "unknown or missing device token")
        key = request.headers.get("idempotency-key", "")
        if key and not _valid_id(key):
            return _refuse(fleet, request, 400, "bad Idempotency-Key header", device)
        try:
            body = await read_body(request, fleet.config.max_body, fleet.config.request_timeout)
            pushed = read_report(body, device)
            result = await self._store(device, key, pushed, body)
        except RefusedReport as exc:
            return _refuse(fleet, request, exc.status, str(exc), device)
        except SQLAlchemyError as exc:
            log_event(logger, logging.ERROR, "ingest.failed", device=device, error=" ".join(str(exc).split())[:300])
            return _error(503, "database unavailable, retry later")
        outcome = "replayed" if result.replayed else "changed" if result.response["changed"] else "unchanged"
        fleet.counters.count("ingested", outcome)
        log_event(logger, logging.INFO, "ingest.accepted", device=device, report=pushed.report_id, outcome=outcome)
        return JSONResponse(result.response, headers={"Idempotent-Replayed": "true"} if result.replayed else {})

    async def _store(self, device: str, key: str, pushed: Pushed, body: bytes) -> Ingested:
        """An unchanged report (same input hash) is only a sighting; any other is judged and stored,
        in the same transaction and worker thread. Raise RefusedReport for an inventory that
        cannot be used, SQLAlchemyError if the database fails."""
        store, policy, now = self.fleet.store, self.fleet.policy, time.time()
        scoped, state = scoped_key(device, key or pushed.report_id), pushed.input_hash(policy.fingerprint)

        def judged() -> list[DeviceVerdict]:
            return judge(policy, report_inventory(pushed, strict=True), {device: pushed.claim},
                         datetime.fromtimestamp(now, timezone.utc), {device: state})

        return await run_in_threadpool(store.push, device, state, scoped, now, pushed.report_id, judged, body)


View = Callable[[Any, Request, float], Any]
"""A read-only view: (connection, request, now) → a JSON document, or None for "not found"."""


def reader(fleet: Fleet, build: View) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a view: admin credential, filters, one read transaction, JSON out."""

    async def endpoint(request: Request) -> Response:
        if not web.signed_in(fleet, request):
            return _error(401, "admin token required")
        now = time.time()

        def run() -> Any:
            with fleet.store.read() as connection:
                return build(connection, request, now)

        try:
            document = await run_in_threadpool(run)
        except query.BadFilter as exc:
            return _error(400, str(exc))
        if document is None:
            return _error(404, "not found")
        return JSONResponse(document)

    return endpoint


def api_routes(fleet: Fleet) -> list[Route]:
    """The read-only JSON API (described by OPENAPI)."""
    def selection(request: Request, now: float) -> query.Selection:
        return query.selection_from(dict(request.query_params), now)

    views: dict[str, View] = {
        "status": lambda c, r, now: query.status(c, now, fleet.stale_after, fleet.entries()),
        "devices": lambda c, r, now: query.devices(c, now, fleet.stale_after, selection(r, now)),
        "devices/{device:path}": lambda c, r, now: query.device(c, now, fleet.stale_after, r.path_params["device"]),
        "findings": lambda c, r, now: query.findings(c, now, selection(r, now)),
        "history": lambda c, r, now: query.history(c, selection(r, now)),
        "openapi.json": lambda c, r, now: OPENAPI,
    }
    return [Route(f"/api/v1/{path}", reader(fleet, view)) for path, view in views.items()]


def metrics_route(fleet: Fleet) -> Route:
    """`/metrics`: the metrics token when one is configured, else the admin token."""
    registry = CollectorRegistry(auto_describe=False)

    def read_metrics() -> list[Any]:
        with fleet.store.read() as connection:
            facts = metric_facts(connection, time.time(), fleet.stale_after)
        return families(facts, fleet.counters, time.time(), fleet.policy.banlist.serial)

    registry.register(FleetCollector(read_metrics))

    async def metrics(request: Request) -> Response:
        if not same(bearer(request.headers.get("authorization")), fleet.metrics_token or fleet.admin_token):
            return _error(401, "metrics or admin token required")
        return Response(await run_in_threadpool(generate_latest, registry), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", metrics)


async def healthz(request: Request) -> Response:
    """Liveness for load balancers and systemd: the one route without a credential."""
    return Response("ok\n", media_type="text/plain")


def make_app(fleet: Fleet) -> Starlette:
    """Return the ASGI application serving `fleet`."""
    ingest = Ingest(fleet)
    return Starlette(routes=[
        Route("/healthz", healthz),
        Route("/v1/enroll", ingest.enroll, methods=["POST"]),
        Route("/v1/reports", ingest.reports, methods=["POST"]),
        metrics_route(fleet),
        *api_routes(fleet),
        *web.routes(fleet),
    ])
