"""`appban fleet serve`: open the store, load the policy, start the background jobs, run uvicorn.

Why uvicorn: a maintained ASGI server with the limits a listener needs (concurrent connections,
keep-alive and header-size bounds, TLS with optional client certificates) and clean SIGTERM
handling; what it lacks, a deadline for slow request headers and a per-client cap, is added by
its own hook, the protocol class (agent/fleet/listener.py, on httptools or h11); Starlette on top is a small, well-kept toolkit, so the fleet's own code is only its routes.

Background jobs run in one thread: refresh the fleet's ban list (a new serial or changed group
rules re-check every stored inventory, once per database), prune by retention, and poll pull
targets. Every job failure is logged and the server goes on.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import ssl
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from agent import log
from agent.banlist.parse import BanListError
from agent.banlist.source import load_active, load_fresh
from agent.config import Config, interval_seconds
from agent.errors import UserError
from agent.fleet.app import Fleet, make_app
from agent.fleet.config import FleetConfig, load_fleet_config
from agent.fleet.listener import guarded_protocol
from agent.fleet.store import Store, StoreError
from agent.fleet.verdict import Policy, make_policy
from agent.log import log_event
from agent.service.server import ListenError, parse_listen
from agent.service.server import tls_context as server_tls_context
from agent.service.settings import read_token

logger = logging.getLogger(__name__)

POLICY_SETTING = "policy"
PRUNE_EVERY = 3600.0
TICK = 1.0


class FleetError(UserError):
    """The fleet cannot start or answer; one line naming what and where."""


def load_policy(config: FleetConfig, now: datetime, fresh: bool) -> Policy:
    """Return the fleet's policy: its ban list (refreshed from the URL when `fresh`, else the
    verified cache) and group rules. Raise FleetError if no list is usable."""
    agent_config = Config(state_dir=config.state_dir, banlist=config.banlist)
    try:
        if fresh:
            banlist, info, warning = load_fresh(agent_config, None, now, Path(config.state_dir))
            if warning:
                log_event(logger, logging.WARNING, "fleet.refresh_failed", error=warning, serial=banlist.serial)
        else:
            banlist, info = load_active(agent_config, None, now, Path(config.state_dir))
    except BanListError as exc:
        raise FleetError(str(exc)) from None
    return make_policy(banlist, info, config.groups, config.default_groups)


def enroll_secret(config: FleetConfig, rotate: bool = False) -> str:
    """Return the enroll secret, creating it (mode 0600) when missing or when `rotate`."""
    from agent.atomic import write_atomic

    path = config.enroll_secret_path()
    if not rotate:
        try:
            existing = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            existing = ""
        except OSError as exc:
            raise FleetError(f"enroll_secret_file {path}: cannot read: {exc.strerror or exc}") from None
        if existing:
            return existing
    secret = secrets.token_urlsafe(32)
    try:
        write_atomic(path, secret.encode() + b"\n", mode=0o600, parents=True)
    except OSError as exc:
        raise FleetError(f"enroll_secret_file {path}: cannot write: {exc.strerror or exc}") from None
    return secret


def open_store(config: FleetConfig) -> Store:
    """Open (and migrate) the configured database. Raise FleetError if unusable."""
    if not config.database:
        try:
            Path(config.state_dir).mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as exc:
            raise FleetError(f"state_dir {config.state_dir}: {exc.strerror or exc}") from None
    try:
        return Store(config.database_url())
    except StoreError as exc:
        raise FleetError(str(exc)) from None


def apply_policy(store: Store, policy: Policy) -> bool:
    """Re-check every stored inventory when the policy differs from the one the database was
    judged with (a new list serial, new rules), then record it for every server on the database;
    return whether it did. A server still holding an *older* serial (its refresh failed) never
    re-judges the fleet back to it."""
    recorded = (store.setting(POLICY_SETTING) or "").partition(":")
    if recorded[2] == policy.fingerprint or (recorded[0].isdigit() and int(recorded[0]) > policy.banlist.serial):
        return False
    store.recheck(policy, time.time())
    store.set_setting(POLICY_SETTING, f"{policy.banlist.serial}:{policy.fingerprint}")
    return True


def build_fleet(config: FleetConfig) -> Fleet:
    """Return the running fleet's shared state. Raise FleetError (one line) when anything is unusable."""
    if not config.admin_token_file:
        raise FleetError("admin_token_file is required: the admin token protects every read")
    admin = read_token(config.admin_token_file, "admin_token_file")
    metrics = read_token(config.metrics_token_file, "metrics_token_file") if config.metrics_token_file else ""
    store = open_store(config)
    enroll_secret(config)
    policy = load_policy(config, datetime.now(timezone.utc), fresh=True)
    apply_policy(store, policy)
    return Fleet(config=config, store=store, admin_token=admin, metrics_token=metrics, policy=policy)


def configured_connectors(config: FleetConfig) -> list[str]:
    """The MDM connectors whose `mdm:` block is set, in registry order."""
    from agent.inventory.connectors import CONNECTORS

    return [name for name in CONNECTORS if getattr(config.mdm, name) is not None]


class Jobs(threading.Thread):
    """The background jobs of one server: refresh, prune, pull and, when `mdm:` names any, the MDM
    API connectors; each on its own interval."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(name="fleet-jobs", daemon=True)
        self.fleet = fleet
        self.stop = threading.Event()
        from agent.fleet.pull import Puller

        self.puller = Puller(fleet)

    def run(self) -> None:
        config = self.fleet.config
        every = {self.refresh: interval_seconds(config.banlist.refresh), self.prune: PRUNE_EVERY,
                 self.puller.poll_due: TICK}
        if configured_connectors(config):
            every[self.read_mdm] = interval_seconds(config.mdm_interval)
        first = (self.puller.poll_due, self.read_mdm)
        due = {job: time.monotonic() + (0 if job in first else period) for job, period in every.items()}
        while not self.stop.wait(TICK):
            for job, period in every.items():
                if time.monotonic() >= due[job]:
                    due[job] = time.monotonic() + period
                    self._guarded(job)

    def _guarded(self, job: object) -> None:
        try:
            job()  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - one failed job must not end the server
            log_event(logger, logging.ERROR, "fleet.job_failed", job=getattr(job, "__name__", str(job)),
                      error=" ".join(f"{type(exc).__name__}: {exc}".split())[:500])

    def refresh(self) -> None:
        policy = load_policy(self.fleet.config, datetime.now(timezone.utc), fresh=True)
        if policy.fingerprint != self.fleet.policy.fingerprint:
            self.fleet.policy = policy
            log_event(logger, logging.INFO, "fleet.policy_changed", serial=policy.banlist.serial)
        apply_policy(self.fleet.store, self.fleet.policy)

    def read_mdm(self) -> None:
        """Read every configured MDM and store each phone as its own device; one connector that
        fails is logged and the others still run."""
        from agent.fleet.sources import ConnectorSource
        from agent.inventory.connectors import make_connector

        for name in configured_connectors(self.fleet.config):
            try:
                source = ConnectorSource(name, make_connector(name, self.fleet.config.mdm))
                stored = self.fleet.store.ingest_source(source, self.fleet.policy, time.time())
            except Exception as exc:  # noqa: BLE001 - one MDM must not stop the next
                log_event(logger, logging.ERROR, "fleet.mdm_failed", connector=name,
                          error=" ".join(f"{type(exc).__name__}: {exc}".split())[:500])
                continue
            log_event(logger, logging.INFO, "fleet.mdm_read", connector=name, devices=stored)

    def prune(self) -> None:
        deleted = self.fleet.store.prune(interval_seconds(self.fleet.config.retention), time.time())
        if deleted:
            log_event(logger, logging.INFO, "fleet.pruned", rows=deleted)


def tls_context(config: FleetConfig) -> ssl.SSLContext | None:
    """The listener's TLS context (None without `tls_cert`): the certificate and key, and with
    `tls_client_ca` a client certificate signed by it required. The listener wraps each
    connection in it itself (agent/fleet/listener.py), so the handshake is bounded and counted.
    Raise FleetError (one line) if the files cannot be used."""
    if not config.tls_cert:
        return None
    try:  # the agent endpoint's context: not create_default_context(), whose system CAs would vouch for clients too
        context = server_tls_context(config.tls_cert, config.tls_key)
        if config.tls_client_ca:
            context.load_verify_locations(config.tls_client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise FleetError(f"tls_cert {config.tls_cert}: cannot be used: {exc}") from None
    return context


def _bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket here, so a busy port is one FleetError line (exit 2), not uvicorn's exit 1."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it: without it Nagle holds a response's body behind its headers
    # until the client's delayed ACK (40 ms per request on a kept-alive connection).
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise FleetError(f"listen {host}:{port}: cannot listen: {exc.strerror or exc}") from None
    return listener


def serve(config_path: str | None) -> int:
    """Run the fleet server until SIGTERM/SIGINT; return 0 after a clean stop.

    Raise FleetError or ConfigError (one line) when it cannot start.
    """
    import uvicorn

    config = load_fleet_config(config_path)
    log.configure(config.logging.format, config.logging.level)
    # uvicorn's own errors (a request that crashed a handler) in the same one-event-per-line format.
    server_log = logging.getLogger("uvicorn.error")
    server_log.handlers[:], server_log.propagate = logging.getLogger("agent").handlers, False
    try:
        host, port = parse_listen(config.listen)
    except ListenError as exc:
        raise FleetError(str(exc).replace("server.listen", "listen")) from None
    for name in ("tls_cert", "tls_key", "tls_client_ca"):
        value = getattr(config, name)
        if value and not os.access(value, os.R_OK):
            raise FleetError(f"{name} {value}: cannot read")
    tls = tls_context(config)
    listener = _bind(host, port)
    fleet = build_fleet(config)
    jobs = Jobs(fleet)
    protocol = guarded_protocol(config.header_timeout, config.request_timeout, config.max_connections_per_client,
                                lambda status: fleet.counters.count("refused", str(status)), tls)
    server = uvicorn.Server(uvicorn.Config(
        make_app(fleet), host=host, port=port, log_config=None, access_log=False, server_header=False,
        limit_concurrency=config.max_connections, timeout_keep_alive=5, http=protocol,
        timeout_graceful_shutdown=int(config.request_timeout)))
    jobs.start()
    log_event(logger, logging.INFO, "fleet.started", listen=f"{host}:{port}", database=fleet.store.safe_url,
              serial=fleet.policy.banlist.serial, http=protocol.implementation, tls=tls is not None)
    try:
        server.run(sockets=[listener])
    finally:
        jobs.stop.set()
        jobs.join(10)
        fleet.store.close()
        log_event(logger, logging.INFO, "fleet.stopped")
    return 0
