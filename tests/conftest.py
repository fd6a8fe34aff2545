"""Shared test helpers: paths, ban-list builders and a way to run the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m agent ARGS` as a real process and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=timeout,
        cwd=cwd or REPO, env={**os.environ, **(env or {})},
    )


def require_tool(name: str) -> str:
    """Return a tool's path; skip when missing on a developer machine, fail in CI (CI installs it)."""
    import shutil

    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (scripts/apt-packages.txt should install it)")
        pytest.skip(f"{name} is not installed")
    return path


# The throwaway PostgreSQL cluster (session-scoped) and the SQLite/PostgreSQL parametrization of
# the fleet's storage tests.
from tests.postgres import database_url, pg_database, postgres_server  # noqa: E402,F401
