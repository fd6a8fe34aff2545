"""What the phone collectors share: reading attached devices in parallel, each failure confined to
its own device.

A gateway may have a dozen phones on a hub; reading them one after another would make one stuck
phone (a pairing prompt nobody answers) stall the rest, so each is read on its own thread and
every call it makes has a timeout.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping, Sequence, TypeVar

from agent.inventory.base import Collected, Context
from agent.inventory.preconditions import gateway_mode
from agent.log import log_event
from agent.model import CollectorError
from agent.runner import CommandError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def gateway_unavailable(ctx: Context, programs: Sequence[str]) -> str | None:
    """Return why a phone collector cannot run: gateway mode off, or a tool missing; else None."""
    off = gateway_mode(ctx)
    if off is not None:
        return off
    missing = [p for p in programs if not ctx.runner.which(p)]
    return f"not installed: {', '.join(missing)}" if missing else None


def pairs(facts: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Return the non-empty facts as sorted pairs, the hashable form of Device.attributes and App.extra."""
    return tuple(sorted((k, v) for k, v in facts.items() if v))


class UnsafeIdentifierError(ValueError):
    """A serial, UDID or package name without the platform's syntax (it could inject a command)."""


def read_all(
    collector: str, items: Sequence[T], device_id: Callable[[T], str],
    read: Callable[[T], Collected], parallel: int,
) -> Collected:
    """Given attached devices and the function that reads one, return everything read, with one
    CollectorError per device whose read raised CommandError or UnsafeIdentifierError (a
    timeout included); at most `parallel` devices are read at once."""

    def guarded(item: T) -> Collected:
        try:
            return read(item)
        except (CommandError, UnsafeIdentifierError) as exc:
            log_event(logger, logging.WARNING, "gateway.device_failed", collector=collector,
                      device=device_id(item), error=str(exc))
            return Collected(errors=[CollectorError(collector, str(exc), device_id(item))])

    merged = Collected()
    if not items:
        return merged
    from concurrent.futures import ThreadPoolExecutor  # ~2 ms to import: only when there are phones

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items)))) as pool:
        for outcome in pool.map(guarded, items):
            merged.apps += outcome.apps
            merged.devices += outcome.devices
            merged.errors += outcome.errors
            merged.notes += outcome.notes
    return merged
