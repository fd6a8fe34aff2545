"""The fleet's HTTP face, a Starlette application: ingest (`/v1/enroll`, `/v1/reports`), the
read-only JSON API (`/api/v1/…`, described by `/api/v1/openapi.json`), the web pages and `/metrics`.

Every route but `/healthz` needs a credential: the enroll secret to enroll, a device token to push
(one's own reports only), the admin token (header or web session) to read, the admin or metrics
token for `/metrics`. Bodies are read with a hard size limit; database work runs in Starlette's
thread pool so a slow query never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio
import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.config import interval_seconds
from agent.exposition import CONTENT_TYPE, Family, render
from agent.fleet import query
from agent.fleet import web
from agent.fleet.auth import bearer, same
from agent.fleet.config import FleetConfig
from agent.fleet.enrollment import (PROPOSAL, EnrollRefused, allow_reenroll, device_for_token, enroll, enrolled_among,
                                   revoke)
from agent.fleet.gateways import carries_others, may_report
from agent.fleet.groupcommit import GroupCommit
from agent.fleet.ingest import Pushed, RefusedReport, read_report, report_inventory
from agent.fleet.metrics import Counters, FleetCollector, families, metric_facts
from agent.fleet.openapi import OPENAPI
from agent.fleet.store import Ingested, PushJob, Store, TokenRevoked, scoped_key, token_hash
from agent.fleet.tables import ID
from agent.fleet.verdict import DeviceVerdict, Policy, judge
from agent.log import log_event
from agent.printable import printable

logger = logging.getLogger(__name__)

MAX_ENROLL_BODY = 4096
TOKEN_CACHE_SECONDS = 3600.0
"""How long a device token, once looked up, names its device without a separate query. The cache
only saves that lookup: the ingest transaction checks the token against the device's enrollment
row in the same statements, so a token replaced or revoked on any server stops working at once.
An hour, not a minute: a token's hash names one device for ever (it is unique and random), so a
longer life cannot accept anything more, and agents push every 5 minutes by default — with 60 s
every push paid the lookup (a read transaction and a worker hand-off)."""
TOKEN_CACHE_SIZE = 100_000
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Holder:
    """The device a token was issued to, and the token's stored form (hashed once, when cached)."""

    device: str
    token_hash: str


@dataclass
class Fleet:
    """What the routes share: config, store, secrets and the policy in force (replaced on refresh)."""

    config: FleetConfig
    store: Store
    admin_token: str
    policy: Policy
    metrics_token: str = ""
    counters: Counters = field(default_factory=Counters)
    _tokens: dict[str, tuple[Holder, float]] = field(default_factory=dict)

    def cached_device(self, token: str) -> Holder | None:
        """The device of a token checked less than TOKEN_CACHE_SECONDS ago, else None."""
        cached = self._tokens.get(token)
        return cached[0] if cached is not None and cached[1] > time.monotonic() else None

    def device_for(self, token: str) -> Holder | None:
        """The device a token belongs to (None: unknown), from a short-lived cache or the store."""
        holder = self.cached_device(token)
        if holder is not None:
            return holder
        device = device_for_token(self.store, token)
        return None if device is None else self.remember(token, device)

    def remember(self, token: str, device: str) -> Holder:
        """Cache that `token` belongs to `device` (looked up, or just granted by an enrollment:
        the device's first push then needs no lookup either)."""
        if len(self._tokens) >= TOKEN_CACHE_SIZE:
            self._tokens.clear()
        holder = Holder(device, token_hash(token))
        self._tokens[token] = (holder, time.monotonic() + TOKEN_CACHE_SECONDS)
        return holder

    def forget(self, token: str) -> None:
        """Drop a token from the cache (the database said it is dead)."""
        self._tokens.pop(token, None)

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
    try:
        if _timeout is None:  # Python 3.10
            with anyio.fail_after(timeout):
                return await _read(request, limit)
        async with _timeout(timeout):
            return await _read(request, limit)
    except TimeoutError:
        raise RefusedReport(408, f"body not received within {timeout:g} s") from None


_timeout = getattr(asyncio, "timeout", None)
"""asyncio's own deadline (Python 3.11 on): a third of anyio's cancel scope's cost, which was a
tenth of what the server spent on an unchanged push."""


async def _read(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RefusedReport(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= ID and value.isprintable() and value.strip() == value


class Ingest:
    """The two routes agents call: enroll with the secret, push reports with the device token."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.commits = GroupCommit(fleet.store, fleet.counters)

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
        proposed = data.get("token", "")
        if not isinstance(proposed, str) or (proposed and not PROPOSAL.fullmatch(proposed)):
            return _refuse(fleet, request, 422, "token must be 32 to 256 URL-safe characters", device)
        client = request.client.host if request.client else ""
        current = bearer(request.headers.get("authorization"))  # a rotation proves the current token
        try:
            granted = await run_in_threadpool(enroll, fleet.store, device, time.time(), f"client {client}", current,
                                              proposed)
        except EnrollRefused as exc:
            return _refuse(fleet, request, exc.status, str(exc), device)
        if current:
            fleet.forget(current)
        fleet.remember(granted.token, device)
        log_event(logger, logging.INFO, "fleet.enrolled", device=device, how=granted.event, client=client or None)
        return JSONResponse({"device": device, "token": granted.token})

    async def reports(self, request: Request) -> Response:
        """Authenticate the device, read the report, then store it (fast path first)."""
        fleet = self.fleet
        token = bearer(request.headers.get("authorization"))
        holder = (fleet.cached_device(token) or await run_in_threadpool(fleet.device_for, token)) if token else None
        if holder is None:
            return _refuse(fleet, request, 401, "unknown or missing device token")
        device = holder.device
        key = request.headers.get("idempotency-key", "")
        if key and not _valid_id(key):
            return _refuse(fleet, request, 400, "bad Idempotency-Key header", device)
        try:
            body = await read_body(request, fleet.config.max_body, fleet.config.request_timeout)
            pushed = read_report(body, device)
            result = await self._store(device, holder.token_hash, key, pushed, body)
        except RefusedReport as exc:
            return _refuse(fleet, request, exc.status, str(exc), device)
        except TokenRevoked:
            fleet.forget(token)
            return _refuse(fleet, request, 401, "device token replaced or revoked", device)
        except SQLAlchemyError as exc:
            log_event(logger, logging.ERROR, "ingest.failed", device=device, error=" ".join(str(exc).split())[:300])
            return _error(503, "database unavailable, retry later")
        outcome = "replayed" if result.replayed else "changed" if result.response["changed"] else "unchanged"
        fleet.counters.count("ingested", outcome)
        log_event(logger, logging.INFO, "ingest.accepted", device=device, report=pushed.report_id, outcome=outcome,
                  inventory="digest" if pushed.digest_only else None)
        return Response(orjson.dumps(result.response), media_type=JSON_TYPE,
                        headers={"Idempotent-Replayed": "true"} if result.replayed else None)

    async def _store(self, device: str, token: str, key: str, pushed: Pushed, body: bytes) -> Ingested:
        """An unchanged report (same input hash) is only a sighting; any other is judged and stored
        (a differential one, naming its inventory by digest, is refused with 409 instead: the
        agent sends it again with the inventory). The answer carries the inventory's digest,
        which the agent may send in place of the same inventory next time (not to a gateway).
        Either way the push joins the group commit (one writer, one transaction for the pushes
        that arrived together, answered after it committed), which also checks `token` (its
        hash) against the device's enrollment. A gateway's report (it names other devices) is parsed first, its
        phones checked against the grants and the enrollments, and always fully ingested. Raise
        RefusedReport for an inventory that cannot be used, TokenRevoked for a dead token,
        SQLAlchemyError if the database fails."""
        store, policy, now = self.fleet.store, self.fleet.policy, time.time()
        scoped, state = scoped_key(device, key or pushed.report_id), pushed.input_hash(policy.fingerprint)
        gateway = carries_others(pushed.document, device)
        parsed = None
        if gateway:
            parsed = report_inventory(pushed, strict=True, granted=may_report(self.fleet.config.gateways, device))
            own = await run_in_threadpool(enrolled_among, store, [d.id for d in parsed.devices if d.id != device])
            if own:
                raise RefusedReport(403, f"report carries enrolled devices ({', '.join(own[:3])}): each reports for itself")

        def judged() -> list[DeviceVerdict]:
            if pushed.digest_only:  # not the state stored for this device: only the inventory can say what changed
                raise RefusedReport(409, f"inventory_digest {pushed.inventory_digest[:12]}… with this report is not "
                                         f"what the fleet holds for device {device!r}: send the inventory")
            verdicts = judge(policy, parsed or report_inventory(pushed, strict=True), {device: pushed.claim},
                             datetime.fromtimestamp(now, timezone.utc), {device: state})
            verdicts.sort(key=lambda verdict: verdict.device.id != device)  # the sender first: key and token are its
            return verdicts

        return await self.commits.push(PushJob(device, state, scoped, now, pushed.report_id, judged, body, token,
                                               not gateway, "" if gateway else pushed.inventory_digest))


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


def admin_routes(fleet: Fleet) -> list[Route]:
    """The administrator's enrollment controls: `POST /api/v1/devices/{id}/reenroll` (body
    optionally `{"within": "1d"}`) and `/revoke`. The admin token as a bearer header only: a
    change is never made on the strength of a browser's cookie."""

    async def control(request: Request) -> Response:
        device, action = request.path_params["device"], request.path_params["action"]
        if not same(bearer(request.headers.get("authorization")), fleet.admin_token):
            return _refuse(fleet, request, 401, "admin token required (Authorization: Bearer)", device)
        actor = f"api {request.client.host if request.client else ''}".strip()
        try:
            raw = await read_body(request, MAX_ENROLL_BODY, fleet.config.request_timeout)
            options = json.loads(raw) if raw.strip() else {}
            within = interval_seconds(str(options.get("within", "1d"))) if isinstance(options, dict) else None
        except RefusedReport as exc:
            return _refuse(fleet, request, exc.status, str(exc), device)
        except (ValueError, UnicodeDecodeError) as exc:
            return _refuse(fleet, request, 400, f"body must be JSON like {{\"within\": \"1d\"}}: {exc}", device)
        if within is None:
            return _refuse(fleet, request, 400, "body must be a JSON object", device)
        return await _control(fleet, request, device, action, actor, within)

    return [Route("/api/v1/devices/{device:path}/{action:str}", control, methods=["POST"])]


async def _control(fleet: Fleet, request: Request, device: str, action: str, actor: str, within: float) -> Response:
    """Run one enrollment control, log and answer it."""
    now = time.time()
    try:
        if action == "reenroll":
            until = await run_in_threadpool(allow_reenroll, fleet.store, device, now, actor, within)
            answer: dict[str, Any] = {"device": device, "reenroll_until": until}
        elif action == "revoke":
            await run_in_threadpool(revoke, fleet.store, device, now, actor)
            answer = {"device": device, "revoked_at": now}
        else:
            return _error(404, "not found")
    except EnrollRefused as exc:
        return _refuse(fleet, request, exc.status, str(exc), device)
    log_event(logger, logging.INFO, f"fleet.{action}", device=printable(device), actor=actor)
    return JSONResponse(answer)


def metrics_route(fleet: Fleet) -> Route:
    """`/metrics`: the metrics token when one is configured, else the admin token."""

    def read_metrics() -> list[Family]:
        with fleet.store.read() as connection:
            facts = metric_facts(connection, time.time(), fleet.stale_after)
        return families(facts, fleet.counters, time.time(), fleet.policy.banlist.serial)

    collector = FleetCollector(read_metrics)

    async def metrics(request: Request) -> Response:
        if not same(bearer(request.headers.get("authorization")), fleet.metrics_token or fleet.admin_token):
            return _error(401, "metrics or admin token required")
        return Response(await run_in_threadpool(render, collector), media_type=CONTENT_TYPE)

    return Route("/metrics", metrics)


async def healthz(request: Request) -> Response:
    """Liveness for load balancers and systemd: the one route without a credential."""
    return Response("ok\n", media_type="text/plain")


PUSH_PATH = "/v1/reports"
ASGI = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def push_first(app: Starlette, reports: Callable[[Request], Awaitable[Response]]) -> ASGI:
    """Return an ASGI application that hands `POST /v1/reports` straight to `reports` and every
    other request (and the lifespan) to `app`.

    Why: pushes are nearly all of a fleet's requests, and Starlette's two exception middlewares
    and its router (a regular expression per route until one matches, a handler wrapper building
    the request) cost about a fifth of what the server spent on an unchanged push. The push
    handler catches every refusal it makes itself; anything else it raises is answered 500 and
    logged by uvicorn, as Starlette's error middleware would. The route stays in `app` too, so
    other methods still get Starlette's 405."""

    async def dispatch(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "http" and scope["path"] == PUSH_PATH and scope["method"] == "POST":
            response = await reports(Request(scope, receive))
            await response(scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch


def make_app(fleet: Fleet) -> ASGI:
    """Return the ASGI application serving `fleet` (pushes first, then Starlette's routes)."""
    ingest = Ingest(fleet)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(ingest.commits.close)  # uvicorn has answered every request by now

    starlette = Starlette(lifespan=lifespan, routes=[
        Route("/healthz", healthz),
        Route("/v1/enroll", ingest.enroll, methods=["POST"]),
        Route(PUSH_PATH, ingest.reports, methods=["POST"]),
        metrics_route(fleet),
        *admin_routes(fleet),
        *api_routes(fleet),
        *web.routes(fleet),
    ])
    return push_first(starlette, ingest.reports)
