"""`appban status`: what the service is doing, read from its state directory.

Exit 0 when the service is running, 3 when it is not (as `systemctl status` does).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from agent.commands.common import add_config_arg, add_state_dir_arg, config_from, state_dir_from
from agent.report.outbox import FILENAME, Outbox
from agent.service.settings import ServiceError
from agent.service.state import lock_holder, read_status

EXIT_RUNNING, EXIT_NOT_RUNNING = 0, 3


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="show whether the service runs and what it last did")
    add_config_arg(parser)
    add_state_dir_arg(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    parser.set_defaults(run=run)


def gather_status(state_dir: Path, max_queue: int) -> dict[str, Any]:
    """Return the service's status: running pid (or None), its last saved facts, the live outbox depth."""
    facts = read_status(state_dir) or {}
    if (state_dir / FILENAME).exists():
        try:
            outbox = Outbox(state_dir, max_queue, read_only=True)
        except sqlite3.Error:
            return {"state_dir": str(state_dir), "pid": lock_holder(state_dir), **facts}
        try:
            facts.update(queue_depth=outbox.depth(), dropped=outbox.dropped())
        except sqlite3.Error:
            pass  # not an outbox the service wrote: status shows what else it knows
        finally:
            outbox.close()
    return {"state_dir": str(state_dir), "pid": lock_holder(state_dir), **facts}


def _when(stamp: str | None) -> str:
    return "never" if stamp is None else str(stamp)


def render_status(status: dict[str, Any]) -> str:
    """Return the status as a few lines for people."""
    pid = status["pid"]
    lines = [f"service:      {'running (pid ' + str(pid) + ')' if pid is not None else 'not running'}",
             f"state dir:    {status['state_dir']}"]
    duration = status.get("scan_duration")
    lines.append(f"last scan:    {_when(status.get('last_scan'))}"
                 + (f" ({duration:.2f} s)" if duration is not None else ""))
    lines.append(f"last refresh: {_when(status.get('last_refresh'))}"
                 + (f" (last attempt failed: {status['refresh_error']})" if status.get("refresh_error") else ""))
    serial = status.get("serial")
    lines.append(f"ban list:     {'none yet' if serial is None else 'serial ' + str(serial)}"
                 + (" (stale)" if status.get("stale") else ""))
    counts = status.get("counts") or {}
    lines.append("findings:     " + (", ".join(f"{n} {s}" for s, n in counts.items()) if counts else "no scan yet"))
    lines.append(f"outbox:       {status.get('queue_depth', 0)} queued, {status.get('dropped', 0)} dropped")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    state_dir = state_dir_from(args, config)
    try:
        status = gather_status(state_dir, config.push.max_queue)
    except OSError as exc:
        raise ServiceError(f"state dir {state_dir}: cannot read: {exc.strerror or exc}") from None
    if args.format == "json":
        sys.stdout.write(json.dumps(status, indent=2) + "\n")
    else:
        sys.stdout.write(render_status(status))
    return EXIT_RUNNING if status["pid"] is not None else EXIT_NOT_RUNNING
