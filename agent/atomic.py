"""The one way appban replaces a file: a complete temporary copy, fsynced, renamed over it.

A reader (apt, dnf, fapolicyd, `appban status`, the next refresh) or a crash then sees the old
file or the new one, never half of either; the directory is fsynced too, so the rename itself
survives a power cut. The ban-list cache, the service's state and the enforcement pins all use it.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int | None = None, parents: bool = False) -> None:
    """Replace `path` with `data`. `mode` sets the permissions (None: as the umask allows, like
    open() would); `parents` creates missing folders first.

    Raise OSError if the folder cannot be written (the old file, if any, is left as it was).
    """
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")  # not secrets: it maps libcrypto
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (on POSIX a rename lives in the directory's data)."""
    if not hasattr(os, "O_DIRECTORY"):
        return  # Windows: directories cannot be opened for fsync; NTFS journals the rename
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
