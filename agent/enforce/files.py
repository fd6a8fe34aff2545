"""Paths on the enforced system (a mounted tree in tests, "/" in production)."""

from __future__ import annotations

import os


def on_root(root: str, path: str) -> str:
    """Return a device path as seen from here, when the enforced system is mounted at `root`."""
    return os.path.join(root, path.lstrip("/"))
