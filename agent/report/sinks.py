"""Where the service sends each scan's report: the sink seam.

As borgmatic's hooks and glances' exports, every destination is one module with one config
block, and the sinks that exist are listed in one explicit tuple (no discovery): push to the
central server (`push:`, agent/report/push.py) and a JSON-lines file for a SIEM (`jsonl:`,
agent/report/jsonl.py). A new sink is a module with a class that has `wanted` and `accept`, a
config block, and one line in SINKS. A sink that fails is logged and the others still run.
"""

from __future__ import annotations

import logging
from typing import Protocol, Sequence

from agent.config import Config
from agent.log import log_event
from agent.model import Report
from agent.report.jsonl import JsonLinesSink
from agent.report.outbox import Outbox
from agent.report.push import PushSink

logger = logging.getLogger(__name__)


class Sink(Protocol):
    """One destination of reports."""

    name: str

    def accept(self, report: Report, document: bytes) -> None:
        """Take this scan's report (`document` is its `appban.report/v1` JSON). Raise OSError or
        sqlite3.Error if it cannot; the service logs that and goes on."""


class SinkType(Protocol):
    def __call__(self, config: Config, outbox: Outbox) -> Sink: ...
    def wanted(self, config: Config) -> bool: ...


SINKS: tuple[SinkType, ...] = (PushSink, JsonLinesSink)  # type: ignore[assignment]
"""Every sink appban has, in the order each report is handed to them."""


def open_sinks(config: Config, outbox: Outbox) -> list[Sink]:
    """Return the sinks `config` turns on (a sink whose block is empty is off)."""
    return [kind(config, outbox) for kind in SINKS if kind.wanted(config)]


def deliver(sinks: Sequence[Sink], report: Report, document: bytes, errors: tuple[type[Exception], ...]) -> None:
    """Hand the report to every sink; one that raises one of `errors` is logged, the rest still run."""
    for sink in sinks:
        try:
            sink.accept(report, document)
        except errors as exc:
            log_event(logger, logging.ERROR, "sink.failed", sink=sink.name, report=report.id,
                      error=" ".join(f"{type(exc).__name__}: {exc}".split()))
