"""`appban run`: the long-running service — ban-list refresh, scan and push on a schedule.

One main thread runs the jobs (`schedule`) and sleeps on a self-pipe between them (see
agent/service/wakeup.py), so the idle service costs nothing but its memory; signals only set flags
and wake it: SIGTERM/SIGINT let the job in progress finish and then exit 0 (a scan still
collecting is abandoned instead: collecting writes nothing, and a collector stuck on a slow
disk or command must not keep the service from stopping), SIGHUP reloads the config (on
Windows a change to the config file does: agent.platform); a bad one is refused with one log
line and the old one stays. The pull endpoint serves from its own threads and reads the
latest immutable Snapshot. A lock in the state directory keeps a second instance out.

What only some configurations use is imported when they first need it: the enforcement engine
and the exec guard (blocking), the network block, the push outbox (SQLite) and requests, so the
idle service of a reporting-only machine holds none of them (issue 14: its resident memory).
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Callable

import schedule

from agent import log
from agent import platform as host
from agent.banlist.parse import BanListError
from agent.banlist.source import load_fresh
from agent.config import DEFAULT_PATH, Config, ConfigError, interval_seconds
from agent.inventory import UnknownSourceError
from agent.log import log_event
from agent.model import BanList, BanListInfo, Inventory, Report
from agent.report.outbox import FILENAME as OUTBOX_FILE, Outbox
from agent.report.sinks import deliver, open_sinks
from agent.runner import Runner
from agent.scan import build_report, collect_here, enforce_report
from agent.service import server
from agent.service.keeper import GuardKeeper
from agent.service.settings import ServiceError, Settings, load_settings
from agent.report.snapshot import Snapshot, iso_time, render_documents
from agent.service.state import INVENTORY, REPORT, LockHeld, acquire_lock, write_atomic, write_status
from agent.service.wakeup import Wakeup

if TYPE_CHECKING:
    import requests

    from agent.report.enroll import Enrollment

logger = logging.getLogger(__name__)

MAX_SLEEP = 3600.0
RELOAD_ERRORS = (ConfigError, UnknownSourceError, ServiceError)
SINK_ERRORS = (OSError,)


class ScanAbandoned(BaseException):
    """Raised by the stop handler into a scan that is still collecting (nothing written yet).

    A BaseException, so no collector's per-record or per-collector `except Exception` keeps it.
    """


def release_free_memory() -> None:
    """Hand the heap a scan freed back to the system (glibc's malloc_trim; a no-op elsewhere).

    Why: a scan's transient data (the status file's text, every package file list the desktop
    collector reads, the JSON being rendered) grows the heap, and glibc keeps freed pages mapped
    until asked; the idle service stayed ~4 MiB larger than it needed to for the rest of the hour.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc (musl has no malloc_trim)
        pass


def run_service(config_path: str | None, state_dir: str | None) -> int:
    """Run the service until SIGTERM or SIGINT; return the exit code (0 after a clean stop).

    Raise ConfigError, UnknownSourceError or ServiceError (one line) when it cannot start.
    """
    settings = load_settings(config_path, state_dir)
    log.configure(settings.config.logging.format, settings.config.logging.level)
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        lock = acquire_lock(settings.state_dir)
    except LockHeld as exc:
        raise ServiceError(str(exc)) from None
    except OSError as exc:
        raise ServiceError(f"state_dir {settings.state_dir}: {exc.strerror or exc}") from None
    with lock:
        service = Service(settings, lambda: load_settings(config_path, state_dir), Path(config_path or DEFAULT_PATH))
        return service.run()


class Service:
    """The jobs, the signal flags and the latest snapshot of one running service."""

    def __init__(self, settings: Settings, reload: Callable[[], Settings], config_path: Path | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        self._reload_settings = reload
        self.snapshot = Snapshot()
        self.banlist: BanList | None = None
        self.banlist_info: BanListInfo | None = None
        self.outbox: Outbox | None = None
        self._open_outbox()
        self._session: requests.Session | None = None
        self._enrolled: Enrollment | None = None
        self.scheduler = schedule.Scheduler()
        self.endpoint: server.Endpoint | None = None
        self.keeper = GuardKeeper()
        self.started = time.time()
        self._stop = False
        self._reload = False
        self._collecting = False
        self._wake = Wakeup()

    def run(self) -> int:
        """Start the endpoint, run every job once, then follow the schedule until told to stop."""
        for signum in host.stop_signals():
            signal.signal(signum, self._on_stop)
        stop_watching = host.on_reload(self._request_reload, self.config_path)
        self._wake.install()
        log_event(logger, logging.INFO, "service.started", state_dir=str(self.settings.state_dir))
        try:
            self._start_endpoint(self.settings)
        except OSError as exc:
            raise ServiceError(f"server.listen {self.settings.config.server.listen}: cannot listen: "
                               f"{exc.strerror or exc}") from None
        self._update(**self._queue_facts())
        self._plan()
        for job in (self.refresh, self.scan, self.push):
            self._guarded(job)
        while not self._stop:
            self._wake.clear()
            if self._reload:
                self._reload = False
                self._guarded(self._apply_reload)
            self.scheduler.run_pending()
            if self._stop:
                break
            idle = self.scheduler.idle_seconds
            self._wake.wait(MAX_SLEEP if idle is None else min(max(idle, 0.0), MAX_SLEEP))
        stop_watching()
        self._shutdown()
        return 0

    # Signals: only flags and a wake-up, so a job in progress always finishes.
    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True
        self._wake.set()
        if self._collecting:
            self._collecting = False
            raise ScanAbandoned

    def _request_reload(self) -> None:
        """Called by the platform's reload trigger (SIGHUP, or a config change on Windows)."""
        self._reload = True
        self._wake.set()

    def _plan(self) -> None:
        """(Re)create the periodic jobs from config: interval to interval + splay, in seconds."""
        self.scheduler.clear()
        schedule_config = self.settings.config.schedule
        splay = round(interval_seconds(schedule_config.splay, allow_zero=True))
        jobs = [(self.settings.config.banlist.refresh, self.refresh), (schedule_config.scan, self.scan)]
        if self.settings.config.push.url:
            jobs.append((schedule_config.push, self.push))
        for every, job in jobs:
            base = max(1, round(interval_seconds(every)))
            every_job = self.scheduler.every(base)
            (every_job.to(base + splay) if splay else every_job).seconds.do(self._guarded, job)

    def _guarded(self, job: Callable[[], None]) -> None:
        """Run one job unless a stop was requested; a failing job is logged and the service goes on."""
        if self._stop:
            return
        try:
            job()
        except ScanAbandoned:
            log_event(logger, logging.WARNING, "scan.abandoned", reason="stop requested while collecting")
        except Exception as exc:  # noqa: BLE001 - one failed run must not end the service
            log_event(logger, logging.ERROR, "job.failed", job=job.__name__,
                      error=" ".join(f"{type(exc).__name__}: {exc}".split()))
        try:
            write_status(self.settings.state_dir, self._status())
        except OSError as exc:
            log_event(logger, logging.ERROR, "status.write_failed", error=str(exc))

    def refresh(self) -> None:
        """Refresh the ban list (fetch, verify and cache it when it comes from a URL) and load it.

        A failed fetch keeps the cached list in force and records the error; when a list with a
        new serial comes in after the first scan, scan at once rather than at the next interval.
        """
        now = datetime.now(timezone.utc)
        previous = self.banlist
        try:
            self.banlist, self.banlist_info, warning = load_fresh(
                self.settings.config, None, now, self.settings.state_dir)
        except BanListError as exc:
            log_event(logger, logging.ERROR, "refresh.failed", error=str(exc))
            self._update(refresh_error=str(exc))
            return
        if warning:
            log_event(logger, logging.WARNING, "refresh.failed", error=warning, serial=self.banlist.serial)
            self._update(refresh_error=warning, banlist_issued=self.banlist.issued)
        else:
            log_event(logger, logging.INFO, "refresh.done", serial=self.banlist.serial,
                      source=self.banlist_info.source, signed=self.banlist_info.signed)
            self._update(last_refresh=now.timestamp(), refresh_error="", banlist_issued=self.banlist.issued)
        if previous is not None and previous.serial != self.banlist.serial:
            self.scan()

    def scan(self) -> None:
        """Collect, match and keep the report (memory, state dir, sinks); then try to push it."""
        if self.banlist is None or self.banlist_info is None:
            log_event(logger, logging.ERROR, "scan.skipped", reason="no usable ban list")
            return
        began = time.monotonic()
        log_event(logger, logging.INFO, "scan.started", serial=self.banlist.serial)
        now = datetime.now(timezone.utc)
        report = build_report(self.banlist, self.banlist_info, self._collect(), now,
                              self.settings.config.banlist.stale_after())
        report = self._enforce(self.settings.config, self.banlist, report, now)
        report_json, inventory_json = render_documents(report)
        state_dir = self.settings.state_dir
        # Sinks first: the push outbox is what survives a crash, so no report that reached the
        # state directory can be lost to a kill between the two writes. (An outbox that cannot
        # be written fails the scan, as before; a file sink that cannot be written is logged.)
        self._open_outbox()
        deliver(open_sinks(self.settings.config, self.outbox), report, report_json, SINK_ERRORS)
        write_atomic(state_dir / REPORT, report_json)
        write_atomic(state_dir / INVENTORY, inventory_json)
        duration = time.monotonic() - began
        self._update(report=report, report_json=report_json, inventory_json=inventory_json,
                     last_scan=time.time(), scan_duration=duration, **self._queue_facts())
        release_free_memory()
        for finding in report.findings:  # one event each, so a SIEM needs no report parsing
            log_event(logger, logging.INFO, "scan.finding", app=finding.app.id, device=finding.device,
                      rule=finding.entry.id, status=finding.status, source=finding.app.source,
                      version=finding.app.version or None, outcome=finding.outcome or None)
        counts = report.counts()
        log_event(logger, logging.INFO, "scan.done", report=report.id, apps=len(report.inventory.apps),
                  violations=counts["violation"], errors=len(report.inventory.errors),
                  seconds=round(duration, 3))
        self.push()

    def _collect(self) -> Inventory:
        """Collect this machine's inventory; a stop signal meanwhile abandons it (ScanAbandoned)."""
        self._collecting = True
        try:
            return collect_here(self.settings.config)
        finally:
            self._collecting = False

    def _enforce(self, config: Config, banlist: BanList, report: Report, now: datetime) -> Report:
        """Block what the list and the *local* config say to block (nothing while
        `enforcement.mode` is report), and keep the exec guard's deny list in step with this scan:
        the guard starts at the first blocking scan and runs until the service stops or blocking
        is turned off in the config (a dry run never runs one)."""
        if config.enforcement.mode != "block":
            self.keeper.off(config)
            if config.enforcement.network != "none":  # take back a block written while blocking was on
                from agent.enforce.network import keep_network_block

                keep_network_block(banlist, config, report.inventory.devices[0], Runner(commands=config.commands),
                                   sys.stderr, now)
            return report
        from agent.enforce.guard import build_deny
        from agent.enforce.network import keep_network_block

        runner = Runner(commands=config.commands)
        report = enforce_report(report, banlist, config, runner, sys.stderr, now)
        keep_network_block(banlist, config, report.inventory.devices[0], runner, sys.stderr, now, report.findings)
        deny = build_deny(banlist, report.findings, config, report.inventory.devices[0], now)
        self.keeper.keep(config, banlist, deny, runner)
        return report

    def push(self) -> None:
        """Send what waits in the outbox (no-op while push is off)."""
        config = self.settings.config
        if not config.push.url:
            return
        self._open_outbox()
        if self.outbox is None or not self.outbox.depth():
            return
        from agent.report.push import push_pending  # requests: only once there is something to push

        if self.settings.enroll_secret:
            self._push_enrolled(self.outbox)
        else:
            push_pending(self.outbox, config.push, self.settings.push_token, self._push_session())
        self._update(**self._queue_facts())

    def _push_enrolled(self, outbox: Outbox) -> None:
        """One push cycle with the token from the fleet enrollment (agent.report.enroll.Enrollment):
        enroll when there is none, settle what a 401 means, rotate the token when it is due."""
        from agent.report.push import push_pending

        push, secret, session = self.settings.config.push, self.settings.enroll_secret, self._push_session()
        enrollment = self._enrollment()
        token = enrollment.token(push, secret, self._identity(), session)
        if token is None:
            return
        result = enrollment.settle(push_pending(outbox, push, token, session), token,
                                   lambda other: push_pending(outbox, push, other, session))
        if result.sent and not result.error:
            enrollment.rotate_if_due(push, secret, self._identity(), session)

    def _open_outbox(self) -> None:
        """Open the push outbox once push is configured, or when one is left in the state
        directory from an earlier config (its queued and dropped reports are still counted in
        status and metrics); without either there is nothing to queue, and SQLite stays out of
        the service. Raise ServiceError if it cannot be opened."""
        if self.outbox is not None:
            return
        settings = self.settings
        if not settings.config.push.url and not (settings.state_dir / OUTBOX_FILE).exists():
            return
        import sqlite3

        try:
            self.outbox = Outbox(settings.state_dir, settings.config.push.max_queue)
        except sqlite3.Error as exc:
            raise ServiceError(f"outbox in {settings.state_dir}: {exc}") from None

    def _queue_facts(self) -> dict[str, int]:
        """The outbox's counts for status and metrics (what an empty one counts while there is none)."""
        if self.outbox is None:
            return {"queue_depth": 0, "dropped": 0, "dead_lettered": 0}
        return {"queue_depth": self.outbox.depth(), "dropped": self.outbox.dropped(),
                "dead_lettered": self.outbox.dead_lettered()}

    def _enrollment(self) -> Enrollment:
        """The fleet enrollment's state, made on first use (with push.enroll_secret_file only)."""
        if self._enrolled is None:
            from agent.report.enroll import Enrollment

            self._enrolled = Enrollment(self.settings.state_dir)
        return self._enrolled

    def _identity(self) -> dict[str, str] | None:
        """This device's id and host name as the fleet enrolls it, once a scan has found them."""
        host = self.snapshot.report.inventory.devices[0] if self.snapshot.report else None
        return None if host is None else {"device": host.id, "hostname": host.hostname}

    def _push_session(self) -> requests.Session:
        """Return the push session, made on first use: requests costs ~6 MB of a service that
        may never push."""
        if self._session is None:
            from agent.banlist.fetch import make_session

            self._session = make_session(self.settings.config.push)
        return self._session

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _update(self, **changes: object) -> None:
        self.snapshot = replace(self.snapshot, **changes)

    def _current(self) -> Snapshot:
        return self.snapshot

    def _status(self) -> dict[str, object]:
        return {"started": iso_time(self.started), **self.snapshot.facts()}

    def _start_endpoint(self, settings: Settings) -> None:
        if settings.config.server.listen:
            self.endpoint = server.start(settings.config.server.listen, settings.server_token,
                                         self._current, settings.tls)

    def _stop_endpoint(self) -> None:
        if self.endpoint is not None:
            self.endpoint.shutdown()
            self.endpoint.server_close()
            self.endpoint = None

    def _apply_reload(self) -> None:
        """Load the config again; refuse a bad one (one log line) and keep running on the old one.

        Any error while loading, not only the expected ones, is a refusal: a config the checks did
        not foresee must never end the service.
        """
        try:
            new = self._reload_settings()
        except RELOAD_ERRORS as exc:
            log_event(logger, logging.ERROR, "config.rejected", error=str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - see above: the old config stays in force
            log_event(logger, logging.ERROR, "config.rejected", error=" ".join(f"{type(exc).__name__}: {exc}".split()))
            return
        if new.state_dir != self.settings.state_dir:
            log_event(logger, logging.WARNING, "config.state_dir_ignored", wanted=str(new.state_dir),
                      kept=str(self.settings.state_dir))
            new = replace(new, state_dir=self.settings.state_dir)
        old, self.settings = self.settings, new
        log.configure(new.config.logging.format, new.config.logging.level)
        if self.outbox is not None:
            self.outbox.max_queue = max(1, new.config.push.max_queue)
        self._close_session()  # the next push makes one with the new TLS settings
        if new.server_key() != old.server_key():
            self._restart_endpoint(old, new)
        self._plan()
        log_event(logger, logging.INFO, "config.reloaded")
        self._guarded(self.refresh)
        if (old.config.enforcement, old.config.commands) != (new.config.enforcement, new.config.commands):
            self._guarded(self.scan)  # blocking turned on or off, or the guard changed: at once

    def _restart_endpoint(self, old: Settings, new: Settings) -> None:
        """Serve with the new endpoint settings; if the new address cannot be bound, keep the old."""
        self._stop_endpoint()
        try:
            self._start_endpoint(new)
        except OSError as exc:
            log_event(logger, logging.ERROR, "server.failed", listen=new.config.server.listen, error=str(exc))
            self._start_endpoint(old)

    def _shutdown(self) -> None:
        log_event(logger, logging.INFO, "service.stopping")
        self.keeper.stop()
        self._stop_endpoint()
        if self.outbox is not None:
            self.outbox.close()
        self._close_session()
        self._wake.close()
        log_event(logger, logging.INFO, "service.stopped")
