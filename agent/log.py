"""Structured logging: one event per line, as JSON or as `event key=value` text.

Each event names what it concerns (app, device, rule, collector) as fields, so a fleet's logs
can be searched and counted without parsing prose.
"""

from __future__ import annotations

import logging
import sys
import time
from agent.clock import datetime, timezone

from agent.printable import printable

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Any, Callable

_FIELDS = "appban_fields"


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log one event with its fields (None values are left out)."""
    if not logger.isEnabledFor(level):  # before building the fields: ingest logs every push at INFO
        return
    clean = {k: v for k, v in fields.items() if v is not None}
    logger.log(level, event, extra={_FIELDS: clean})


class Repeats:
    """Log an event the first time, then, while the same thing keeps happening (same `key`), at
    most once per `every` seconds with `repeated`: how many times it happened since the last line
    (this one included).

    Why: a condition only a person can end (a re-enrollment the fleet refuses until the
    administrator allows it) would otherwise write one warning per cycle for days, drowning the
    log. Another key (the condition changed) is logged at once; `clear()` when it is over."""

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._key: str | None = None
        self._logged_at = 0.0
        self._since = 0

    def log(self, logger: logging.Logger, level: int, event: str, key: str, **fields: Any) -> bool:
        """Log `event` unless it is `key` again within `every` seconds of its last line; return whether it did."""
        now = self.clock()
        if key == self._key and now - self._logged_at < self.every:
            self._since += 1
            return False
        repeated = self._since + 1 if key == self._key else 0  # this time included
        self._key, self._logged_at, self._since = key, now, 0
        log_event(logger, level, event, **fields, repeated=repeated or None)
        return True

    def clear(self) -> None:
        """The condition ended: its next occurrence is logged at once."""
        self._key = None


def timestamp(record: logging.LogRecord) -> str:
    """The record's time in ISO 8601, UTC, to the millisecond (as journald and SIEMs sort it)."""
    return datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        import json  # when a line is written: a check that logs nothing does not load json (~5 M instructions)

        data: dict[str, Any] = {
            "time": timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        data.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`TIME LEVEL event key=value ...` on one line: control characters in any value are escaped
    (agent.printable), so a name with a line break cannot forge a second log line, and values
    with spaces, quotes or `=` are quoted, so a value cannot pass for another key."""

    def format(self, record: logging.LogRecord) -> str:
        import json  # as in JsonFormatter

        parts = [timestamp(record), record.levelname.lower(), printable(record.getMessage())]
        for key, value in getattr(record, _FIELDS, {}).items():
            text = printable(str(value))
            quote = not text or any(c in text for c in ' "=\\')
            parts.append(f"{key}={json.dumps(text, ensure_ascii=False) if quote else text}")
        line = " ".join(parts)
        if record.exc_info:
            line += " traceback=" + json.dumps(self.formatException(record.exc_info))
        return line


WAITS: dict[str, str] = {
    "banlist.fetch_retry": "appban: {url}: {error}; trying again in {delay:.1f} s (retry {attempt} of {retries})",
}
"""Events that announce a wait, and the line a person at a terminal sees for each (at any -v)."""


class WaitNotices(logging.Handler):
    """Tells a person at a terminal what a long wait is for, in a plain line, whatever the log
    level: without it, `appban check` against a ban-list server that is down just hangs."""

    def emit(self, record: logging.LogRecord) -> None:
        template = WAITS.get(record.getMessage())
        if template is None:
            return
        try:
            sys.stderr.write(template.format(**getattr(record, _FIELDS, {})) + "\n")
            sys.stderr.flush()
        except (KeyError, ValueError, OSError):  # as StreamHandler does: a log line never ends a run
            self.handleError(record)


def configure(fmt: str = "text", level: str = "warning", notices: bool = False) -> None:
    """Send appban's logs to stderr in the given format ("json" or "text") and level; with
    `notices` (stderr is a terminal) also say what each long wait is for (WAITS)."""
    handler = logging.StreamHandler(sys.stderr)
    # validate=False: both write their own lines, so checking logging's default "%(message)s"
    # checks nothing, and would compile its %-style pattern (~2 M instructions of every command)
    handler.setFormatter(JsonFormatter(validate=False) if fmt == "json" else TextFormatter(validate=False))
    handler.setLevel(level.upper())
    root = logging.getLogger("agent")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    if notices and handler.level > logging.INFO:  # at -v the log line itself says it
        root.addHandler(WaitNotices(logging.INFO))
        root.setLevel(logging.INFO)
