"""File helpers enforcement shares: paths on the enforced system, and atomic writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def on_root(root: str, path: str) -> str:
    """Return a device path as seen from here, when the enforced system is mounted at `root`."""
    return os.path.join(root, path.lstrip("/"))


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a file by renaming a complete temporary copy over it, so readers (apt, dnf,
    fapolicyd) never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
