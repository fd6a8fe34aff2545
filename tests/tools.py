"""Helpers the tests share with the benchmarks, so they import nothing from pytest up front."""

from __future__ import annotations

import os
import shutil


def require_tool(name: str) -> str:
    """Return a tool's path; skip when missing on a developer machine, fail in CI (CI installs it).

    pytest is imported only when the tool is missing: a benchmark that has the tool runs without it."""
    path = shutil.which(name)
    if path is None:
        import pytest

        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (scripts/apt-packages.txt should install it)")
        pytest.skip(f"{name} is not installed")
    return path
