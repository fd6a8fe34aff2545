"""Server-rendered pages for people: overview, one page per entry and per device, CSV downloads and
a login form. Plain HTML and CSS (no JavaScript needed), Jinja2 templates with autoescaping, so a
device or app name can never inject markup.

Login posts the admin token once; the answer sets an HttpOnly, SameSite=Strict session cookie
(Secure when served over TLS), and every page checks it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from agent.fleet import query, render
from agent.fleet.auth import SESSION_COOKIE, SESSION_SECONDS, admin_allowed, make_session, same

MAX_LOGIN_BODY = 4096
STALE_SHOWN = 50

_env = Environment(loader=PackageLoader("agent.fleet", "templates"), autoescape=select_autoescape(["html"]))


def _page(name: str, code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**context), status_code=code,
                        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                                 "X-Frame-Options": "DENY", "Cache-Control": "no-store"})


def signed_in(fleet: Any, request: Request) -> bool:
    """Whether a request carries the admin token or a valid session cookie."""
    return admin_allowed(fleet.admin_token, request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE))


def routes(fleet: Any) -> list[Route]:
    """Return the page routes for a `agent.fleet.app.Fleet`."""
    def page(build: Callable[[Any, Request, float], Response | None]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if not signed_in(fleet, request):
                return RedirectResponse("/login", status_code=303)
            now = time.time()

            def run() -> Response | None:
                with fleet.store.read() as connection:
                    return build(connection, request, now)

            try:
                answer = await run_in_threadpool(run)
            except query.BadFilter as exc:
                return _page("error.html", 400, message=str(exc))
            return answer or _page("error.html", 404, message="not found")

        return endpoint

    def overview(connection: Any, request: Request, now: float) -> Response:
        status = query.status(connection, now, fleet.stale_after, fleet.entries())
        stale = query.devices(connection, now, fleet.stale_after, query.Selection(stale=True, limit=STALE_SHOWN))
        drift = query.findings(connection, now, query.Selection(status="drift", limit=STALE_SHOWN))
        return _page("overview.html", status=status, stale=stale, drift=drift, serial=fleet.policy.banlist.serial)

    def entry(connection: Any, request: Request, now: float) -> Response:
        name = request.path_params["entry"]
        found = query.findings(connection, now, query.Selection(entry=name, limit=query.MAX_LIMIT))
        resolved = query.findings(connection, now, query.Selection(entry=name, status="resolved", limit=100))
        return _page("entry.html", entry=name, findings=found, resolved=resolved)

    def device(connection: Any, request: Request, now: float) -> Response | None:
        document = query.device(connection, now, fleet.stale_after, request.path_params["device"])
        return None if document is None else _page("device.html", **document)

    def download(connection: Any, request: Request, now: float) -> Response | None:
        name = request.path_params["name"]
        params = dict(request.query_params)
        builders = {
            "status": lambda: query.status(connection, now, fleet.stale_after, fleet.entries()),
            "devices": lambda: query.devices(connection, now, fleet.stale_after, query.selection_from(params, now)),
            "findings": lambda: query.findings(connection, now, query.selection_from(params, now)),
            "history": lambda: query.history(connection, query.selection_from(params, now)),
        }
        if name not in builders:
            return None
        return Response(render.to_csv(builders[name]()), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="appban-fleet-{name}.csv"'})

    async def login_form(request: Request) -> Response:
        return _page("login.html")

    async def login(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > MAX_LOGIN_BODY:
            return _page("login.html", 413, error="request too large")
        form = await request.form(max_files=0, max_fields=4)
        if not same(str(form.get("token", "")).strip(), fleet.admin_token):
            return _page("login.html", 401, error="wrong token")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, make_session(fleet.admin_token), max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", secure=bool(fleet.config.tls_cert), path="/")
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return [
        Route("/", page(overview)),
        Route("/entries/{entry}", page(entry)),
        Route("/devices/{device:path}", page(device)),
        Route("/csv/{name}.csv", page(download)),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
