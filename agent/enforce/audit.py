"""The audit trail: every planned, done, refused and failed action as one JSON line, appended.

Why a separate file from the logs: logs rotate and are filtered by level; the audit log is the
record an administrator (or an inquiry) reads to see exactly what the agent did to a machine.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any


class AuditLog:
    """An append-only JSON-lines file, written one whole line per `write` (O_APPEND)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, event: str, **fields: Any) -> None:
        """Append one event (`planned`, `done`, `failed`, `refused`, `dry-run`, `denied-exec`)."""
        line = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event}
        line.update({k: v for k, v in fields.items() if v not in (None, "")})
        data = (json.dumps(line, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """Return every event so far (empty when the log does not exist yet)."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                return [json.loads(line) for line in handle if line.strip()]
        except FileNotFoundError:
            return []
