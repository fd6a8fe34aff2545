"""`appban fleet …`: the central server and its views.

`serve` runs the server; `enroll-secret` prints (or `--rotate`s) the secret agents enroll with;
`reenroll ID` lets a known device id enroll once more and `revoke ID` kills its token at once;
`status`, `devices`, `findings` and `history` read the database named in `--config`, or a running
server's JSON API with `--server URL --token-file F`; `import` ingests saved inventories and MDM
exports. Exit codes follow `appban check`: 0 compliant, 1 a violation in the selection, 2 no
verdict. The fleet's libraries are imported only when a fleet command runs (the `fleet` extra).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable

from agent.commands.common import write_out
from agent.errors import UserError

EXIT_COMPLIANT, EXIT_VIOLATION = 0, 1
API_TIMEOUT = 30.0
VIEWS = ("status", "devices", "findings", "history")


class FleetUsageError(UserError):
    """A fleet command that cannot run as asked; one line."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fleet", help="the central server: serve, enroll, status, devices, findings")
    commands = parser.add_subparsers(dest="fleet_command", required=True, metavar="FLEET_COMMAND")

    serve = commands.add_parser("serve", help="run the fleet server (API, web pages, /metrics)")
    _config_arg(serve)
    serve.set_defaults(run=_run_serve)

    secret = commands.add_parser("enroll-secret", help="print the secret agents enroll with (created if missing)")
    _config_arg(secret)
    secret.add_argument("--rotate", action="store_true", help="replace it with a new one (enrolled agents keep working)")
    secret.set_defaults(run=_run_enroll_secret)

    for name, helptext in (("reenroll", "let a known device id enroll once more (a reinstalled machine)"),
                           ("revoke", "make a device's token stop working at once")):
        control = commands.add_parser(name, help=helptext)
        _config_arg(control)
        control.add_argument("device", metavar="ID")
        control.add_argument("--server", default="", help="ask a running fleet's API at this base URL instead")
        control.add_argument("--token-file", default="", help="admin token file for --server")
        control.add_argument("--ca-bundle", default="", help="CA file to verify --server's certificate")
        if name == "reenroll":
            control.add_argument("--within", default="1d", help="how long the leave lasts (default 1d)")
        control.set_defaults(run=_run_control, action=name)

    imported = commands.add_parser("import", help="ingest saved inventories and MDM exports (JSON, CSV, ZIP)")
    _config_arg(imported)
    imported.add_argument("files", nargs="+", metavar="FILE")
    imported.set_defaults(run=_run_import)

    for name, helptext in (("status", "compliance summary"), ("devices", "devices and their state"),
                           ("findings", "current (or resolved) findings"), ("history", "what appeared and was resolved, when")):
        view = commands.add_parser(name, help=helptext)
        _config_arg(view)
        view.add_argument("--server", default="", help="read a running fleet's API at this base URL instead")
        view.add_argument("--token-file", default="", help="admin token file for --server")
        view.add_argument("--ca-bundle", default="", help="CA file to verify --server's certificate")
        view.add_argument("--format", choices=("table", "json", "csv"), default="table")
        if name != "status":
            view.add_argument("--limit", default="", help="at most this many rows")
            view.add_argument("--offset", default="", help="skip this many rows")
        if name == "devices":
            view.add_argument("--noncompliant", action="store_true")
            view.add_argument("--stale", action="store_true")
        if name in ("devices", "findings"):
            view.add_argument("--group", default="")
            view.add_argument("--kind", default="")
        if name in ("findings", "history"):
            view.add_argument("--entry", default="")
            view.add_argument("--device", default="")
            view.add_argument("--since", default="", help="an age (7d, 12h) or an ISO 8601 time")
        if name == "findings":
            view.add_argument("--status", default="", help="violation, advisory, upcoming, exempt, drift or resolved")
        view.set_defaults(run=_run_view, view=name)


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="fleet config (default /etc/appban/fleet.yaml)")


def _fleet() -> Any:
    """Import the fleet package, or explain the missing extra in one line."""
    try:
        import agent.fleet.server as server
    except ImportError as exc:
        raise FleetUsageError(f"appban fleet needs the fleet extra (pip install 'appban[fleet]'): {exc}") from None
    return server


def _run_serve(args: argparse.Namespace) -> int:
    return _fleet().serve(args.config)


def _run_enroll_secret(args: argparse.Namespace) -> int:
    server = _fleet()
    from agent.fleet.config import load_fleet_config

    write_out(server.enroll_secret(load_fleet_config(args.config), rotate=args.rotate) + "\n")
    return EXIT_COMPLIANT


def _run_import(args: argparse.Namespace) -> int:
    server = _fleet()
    from datetime import datetime, timezone

    from agent.fleet.config import load_fleet_config
    from agent.fleet.sources import FileSource

    config = load_fleet_config(args.config)
    store = server.open_store(config)
    try:
        policy = server.load_policy(config, datetime.now(timezone.utc), fresh=False)
        count = store.ingest_source(FileSource(args.files), policy, time.time())
    finally:
        store.close()
    write_out(f"imported {count} devices from {len(args.files)} file(s)\n")
    return EXIT_COMPLIANT


def _run_control(args: argparse.Namespace) -> int:
    """`reenroll ID` / `revoke ID`: on the database of --config, or through --server's admin API."""
    from agent.config import interval_seconds

    try:
        within = interval_seconds(getattr(args, "within", "1d"))
    except ValueError as exc:
        raise FleetUsageError(f"--within: {exc}") from None
    if args.server:
        _call(args, "POST", f"devices/{args.device}/{args.action}",
              json={"within": args.within} if args.action == "reenroll" else {})
    else:
        _control_local(args, within)
    done = "may enroll again" if args.action == "reenroll" else "is revoked"
    write_out(f"device {args.device} {done}\n")
    return EXIT_COMPLIANT


def _control_local(args: argparse.Namespace, within: float) -> None:
    server = _fleet()
    from agent.fleet.config import load_fleet_config
    from agent.fleet.enrollment import EnrollRefused, allow_reenroll, revoke

    store = server.open_store(load_fleet_config(args.config))
    try:
        if args.action == "reenroll":
            allow_reenroll(store, args.device, time.time(), "cli", within)
        else:
            revoke(store, args.device, time.time(), "cli")
    except EnrollRefused as exc:
        raise FleetUsageError(str(exc)) from None
    finally:
        store.close()


def _params(args: argparse.Namespace) -> dict[str, str]:
    """The view's filters as API query parameters (empty ones left out)."""
    names = ("limit", "offset", "group", "kind", "entry", "device", "since", "status")
    params = {n: str(getattr(args, n)) for n in names if getattr(args, n, "")}
    params.update({n: "1" for n in ("noncompliant", "stale") if getattr(args, n, False)})
    return params


def _local(args: argparse.Namespace) -> dict[str, Any]:
    server = _fleet()
    from datetime import datetime, timezone

    from agent.config import interval_seconds
    from agent.fleet import query
    from agent.fleet.config import load_fleet_config

    config = load_fleet_config(args.config)
    now = time.time()
    try:
        selection = query.selection_from(_params(args), now)
    except query.BadFilter as exc:
        raise FleetUsageError(str(exc)) from None
    stale_after = interval_seconds(config.stale_after)
    store = server.open_store(config)
    try:
        entries = ([e.id for e in server.load_policy(config, datetime.now(timezone.utc), fresh=False).banlist.entries]
                   if args.view == "status" else [])
        with store.read() as connection:
            views: dict[str, Callable[[], dict[str, Any]]] = {
                "status": lambda: query.status(connection, now, stale_after, entries),
                "devices": lambda: query.devices(connection, now, stale_after, selection),
                "findings": lambda: query.findings(connection, now, selection),
                "history": lambda: query.history(connection, selection),
            }
            return views[args.view]()
    finally:
        store.close()


def _remote(args: argparse.Namespace) -> dict[str, Any]:
    return _call(args, "GET", args.view, params=_params(args))


def _call(args: argparse.Namespace, method: str, path: str, **request: Any) -> dict[str, Any]:
    """Call `--server`'s admin API at /api/v1/PATH; return its JSON answer. Raise
    FleetUsageError (one line) when it cannot be reached or refuses."""
    import requests

    from agent.service.settings import read_token

    if not args.token_file:
        raise FleetUsageError("--server needs --token-file (the admin token; never on the command line)")
    token = read_token(args.token_file, "--token-file")
    url = f"{args.server.rstrip('/')}/api/v1/{path}"
    try:
        response = requests.request(method, url, headers={"Authorization": f"Bearer {token}"},
                                    timeout=API_TIMEOUT, verify=args.ca_bundle or True, **request)
    except requests.RequestException as exc:
        raise FleetUsageError(f"fleet server {url}: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    if response.status_code != 200:
        try:
            why = response.json().get("error", "")
        except ValueError:
            why = ""
        raise FleetUsageError(f"fleet server {url}: HTTP {response.status_code} {why}".rstrip())
    try:
        return response.json()
    except ValueError:
        raise FleetUsageError(f"fleet server {url}: answer is not JSON") from None


def verdict(document: dict[str, Any]) -> int:
    """Exit code for a view: 1 when its selection holds a violation, else 0."""
    kind = document.get("format")
    if kind == "appban.fleet-status/v1":
        bad = document["devices"]["noncompliant"] > 0
    elif kind == "appban.fleet-devices/v1":
        bad = any(not d["compliant"] for d in document["devices"])
    elif kind == "appban.fleet-findings/v1":
        bad = any(f["status"] == "violation" and not f["resolved_at"] for f in document["findings"])
    else:
        bad = False
    return EXIT_VIOLATION if bad else EXIT_COMPLIANT


def _run_view(args: argparse.Namespace) -> int:
    if args.view == "history" and not (args.device or args.entry):
        raise FleetUsageError("history needs --device ID or --entry ID")
    document = _remote(args) if args.server else _local(args)
    from agent.fleet import render

    if args.format == "json":
        write_out(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    elif args.format == "csv":
        write_out(render.to_csv(document))
    else:
        write_out(render.to_table(document))
    return verdict(document)
