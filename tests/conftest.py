"""Shared test helpers: paths, ban-list builders and a way to run the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.tools import require_tool  # noqa: F401 - re-exported: tests import it from here

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m agent ARGS` as a real process and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=timeout,
        cwd=cwd or REPO, env={**os.environ, **(env or {})},
    )


# The throwaway PostgreSQL cluster (session-scoped) and the SQLite/PostgreSQL parametrization of
# the fleet's storage tests.
from tests.postgres import database_url, pg_database, postgres_server  # noqa: E402,F401
