"""Inventory: the explicit registry of collectors and the one function that runs them.

The registry is a plain tuple (no implicit subclass discovery), so what runs is visible in one
place; a collector that fails becomes one error in the result while the others still run.
A collector's module is imported only when that collector is selected: `--source dpkg` must not
pay for psutil, the registry reader or the phone gateways.
"""

from __future__ import annotations

import functools
import importlib
import logging
from dataclasses import replace
from agent.clock import datetime, timezone

from agent.errors import UserError
from agent import platform as host_platform
from agent.inventory import preconditions
from agent.inventory.base import Collected, Collector, Context
from agent.inventory.dedupe import merge_launchers
from agent.log import log_event
from agent.model import LOCAL_DEVICE, App, CollectorError, Device, Inventory

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Sequence
    from agent.inventory.preconditions import Precondition

logger = logging.getLogger(__name__)

COLLECTORS: tuple[tuple[str, str], ...] = (
    ("dpkg", "agent.inventory.dpkg:DpkgCollector"),
    ("rpm", "agent.inventory.rpm:RpmCollector"),
    ("pacman", "agent.inventory.pacman:PacmanCollector"),
    ("apk", "agent.inventory.apk:ApkCollector"),
    ("flatpak", "agent.inventory.flatpak:FlatpakCollector"),
    ("snap", "agent.inventory.snap:SnapCollector"),
    ("appimage", "agent.inventory.appimage:AppImageCollector"),
    ("desktop", "agent.inventory.desktop:DesktopCollector"),
    ("process", "agent.inventory.process:ProcessCollector"),
    ("windows", "agent.inventory.windows:WindowsCollector"),
    ("macos", "agent.inventory.macos:MacosCollector"),
    ("android", "agent.inventory.android:AndroidCollector"),
    ("ios", "agent.inventory.ios:IosCollector"),
    ("amapi", "agent.inventory.connectors:AmapiCollector"),
    ("intune", "agent.inventory.connectors:IntuneCollector"),
    ("jamf", "agent.inventory.connectors:JamfCollector"),
)
"""(source name, "module:class") in the order collectors run."""

PRECONDITIONS: dict[str, Precondition] = {
    "rpm": preconditions.rpm_database,
    "flatpak": preconditions.flatpak_installation,
    "pacman": preconditions.PACMAN,
    "apk": preconditions.APK,
    "snap": preconditions.SNAP,
    "windows": preconditions.WINDOWS,
    "macos": preconditions.MACOS,
    "android": preconditions.gateway_mode,
    "ios": preconditions.gateway_mode,
    **{name: preconditions.mdm_configured(name) for name in ("amapi", "intune", "jamf")},
}
"""source name -> what it needs before it can run, asked before its module is imported when the
source was not named (the collector's own `unavailable` asks the same first; for rpm, pacman,
apk and snap it is all they ask; flatpak then reads the installations declared in /etc)."""


@functools.cache
def load_collector(name: str) -> Collector:
    """Return the collector registered as `name`, importing its module on first use."""
    module, _, cls = dict(COLLECTORS)[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


class UnknownSourceError(UserError):
    """`--source` named a collector that does not exist."""


def collector_names() -> list[str]:
    """Return the names `--source` accepts."""
    return [name for name, _ in COLLECTORS]


def select(sources: Sequence[str]) -> list[Collector]:
    """Return the collectors named in `sources` (all of them when empty), in registry order.

    Raise UnknownSourceError naming the first unknown source.
    """
    return [load_collector(name) for name in selected_names(sources)]


def selected_names(sources: Sequence[str]) -> list[str]:
    """Return the names of the collectors `sources` selects (all when empty), in registry order,
    without importing any; raise UnknownSourceError naming the first unknown source."""
    known = collector_names()
    for name in sources:
        if name not in known:
            raise UnknownSourceError(f"unknown source {name!r} (known: {', '.join(known)})")
    return [name for name in known if not sources or name in sources]


def local_device(ctx: Context, groups: Sequence[str] | None = None) -> Device:
    """Return the Device record of the host being inspected (the running one, or the image): its
    id is config `device.id`, else the OS's stable id, else the host name (or the image's path)."""
    cfg = ctx.config
    live_os = host_platform.os_name()
    hostname = cfg.device.hostname or (host_platform.host_name() if ctx.live else "")
    return Device(
        id=cfg.device.id or stable_id(ctx) or hostname or str(ctx.root),
        hostname=hostname,
        kind="host",
        os=live_os if ctx.live else "",
        groups=tuple(groups if groups is not None else cfg.device.groups),
        ownership=cfg.device.ownership,
    )


def stable_id(ctx: Context) -> str:
    """Return the id the OS keeps for the installation being inspected (machine-id, MachineGuid,
    IOPlatformUUID; agent.platform.identity says why not the host name), or "" when none is found."""
    return host_platform.live_device_id(ctx.runner) if ctx.live else host_platform.image_device_id(ctx.root)


def collect(ctx: Context, sources: Sequence[str] = (), groups: Sequence[str] | None = None,
            stream: Callable[[Iterable[App]], None] | None = None) -> Inventory:
    """Run the selected collectors and return the Inventory of the local host (and any devices
    a gateway collector found). A requested collector that cannot run here is an error; one that
    was not requested is skipped quietly. When no collector found anything to read (an empty
    folder, an unmounted mountpoint) that is one error too: zero apps is then no verdict, not
    a clean bill of health.

    With `stream`, a collector that reads page by page (an MDM connector: `pages(ctx)`) hands
    each page's apps to it as the page arrives, and they are not in the Inventory returned (its
    devices, errors and notes are). Such apps are on phones, never launchers or their owners, so
    folding launchers (inventory/dedupe.py) over the rest is what it would be over all."""
    host = local_device(ctx, groups)
    ctx = replace(ctx, device=host.id)
    began = datetime.now(timezone.utc)
    devices: dict[str, Device] = {host.id: host}
    apps: list[App] = []
    errors: list[CollectorError] = []
    notes: list[str] = []
    ran = 0
    names = selected_names(sources)
    if not ctx.root.is_dir():
        return Inventory(devices=(host,), apps=(), errors=(CollectorError("inventory", f"root {ctx.root}: not a folder"),),
                         collected_at=began)
    for name in names:
        if not sources and _unmet(name, ctx, errors):
            continue
        collector = load_collector(name)
        if collector.live_only and not ctx.live:
            if sources:
                reason = f"reads the running system, not {ctx.root}"
                errors.append(CollectorError(collector.name, f"not available here: {reason}"))
            continue
        try:
            reason = collector.unavailable(ctx)
        except Exception as exc:  # noqa: BLE001 - as in _run: one broken collector never stops the others
            errors.append(_failed(collector.name, exc))
            continue
        if reason is not None:
            log_event(logger, logging.INFO, "collector.unavailable", collector=collector.name, reason=reason)
            if sources:
                errors.append(CollectorError(collector.name, f"not available here: {reason}"))
            continue
        paged = stream is not None and hasattr(collector, "pages")
        result = _run_pages(collector, ctx, host.id, stream) if paged else _run(collector, ctx)  # type: ignore[arg-type]
        ran += 1
        apps.extend(a.on_device(host.id) if a.device == LOCAL_DEVICE else a for a in result.apps)
        for device in result.devices:
            devices.setdefault(device.id, device)
        errors.extend(result.errors)
        notes.extend(result.notes)
    if not ran and not errors:
        errors.append(CollectorError("inventory", f"nothing to read at {ctx.root}: no collector found its data "
                                                  "(an empty folder, or a volume that is not mounted?)"))
    return Inventory(
        devices=tuple(devices.values()), apps=tuple(merge_launchers(apps)), errors=tuple(errors), notes=tuple(notes),
        collected_at=began,
    )


def _unmet(name: str, ctx: Context, errors: list[CollectorError]) -> bool:
    """Say whether collector `name`, not asked for by name, cannot run here by its precondition:
    then it is skipped quietly, as its own `unavailable` would have it, without importing its
    module. A precondition that raises is that collector's one error, as in _run."""
    check = PRECONDITIONS.get(name)
    try:
        reason = check(ctx) if check is not None else None
    except Exception as exc:  # noqa: BLE001 - one broken collector never stops the others
        errors.append(_failed(name, exc))
        return True
    if reason is not None:
        log_event(logger, logging.INFO, "collector.unavailable", collector=name, reason=reason)
    return reason is not None


def _run(collector: Collector, ctx: Context) -> Collected:
    """Run one collector; any failure becomes one CollectorError so the others still run."""
    try:
        result = collector.collect(ctx)
    except Exception as exc:  # noqa: BLE001 - a broken collector must never stop the others
        return Collected(errors=[_failed(collector.name, exc)])
    return _logged(result)


def _run_pages(collector: Any, ctx: Context, host: str, stream: Callable[[Iterable[App]], None]) -> Collected:
    """Run a collector page by page, handing each page's apps to `stream`; return the pages'
    devices, errors and notes (notes once each). A failure part way is one CollectorError, and
    the pages before it stay counted, as when a connector's own request fails."""
    kept = Collected()
    try:
        for page in collector.pages(ctx):
            stream(a.on_device(host) if a.device == LOCAL_DEVICE else a for a in page.apps)
            kept.devices += page.devices
            kept.errors += page.errors
            kept.notes += page.notes
    except Exception as exc:  # noqa: BLE001 - as in _run
        kept.errors.append(_failed(collector.name, exc))
    kept.notes = list(dict.fromkeys(kept.notes))
    return _logged(kept)


def _logged(result: Collected) -> Collected:
    """Log each error a collector reported (it still ran), and return its result."""
    for error in result.errors:
        log_event(logger, logging.WARNING, "collector.error", collector=error.collector,
                  device=error.device or None, error=error.message)
    return result


def _failed(name: str, exc: Exception) -> CollectorError:
    """Return the one error collector `name` that raised becomes, and log it."""
    message = " ".join(f"{type(exc).__name__}: {exc}".split())
    log_event(logger, logging.ERROR, "collector.failed", collector=name, error=message)
    return CollectorError(name, message)
