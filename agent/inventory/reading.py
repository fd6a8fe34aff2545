"""Reading files that anyone may have planted: regular files only, bounded, never blocking.

Collectors read launchers, property lists, keyfiles and manifests from users' home folders, where
a FIFO named `x.desktop` would block a plain `open()` forever and a symlink to /dev/zero would be
read until memory runs out. Every collector reads through this module: the file is checked with
`stat` *before* it is opened (opening some devices has effects of its own), opened with O_NONBLOCK
(a FIFO swapped in between cannot block), checked again with `fstat` (it must be the same regular
file) and read up to a size cap. Symlinks to regular files are followed: a launcher linked from
elsewhere is an ordinary way to install one.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

RECORD_LIMIT = 4 * 1024 * 1024
"""One record: a launcher, an Info.plist, a keyfile, an assertion, a manifest."""
DATABASE_LIMIT = 256 * 1024 * 1024
"""A whole package database (dpkg's status, snapd's state.json): tens of MB on a large system."""
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


class UnsafeFileError(OSError):
    """A file that is not read: not a regular file, or over its size cap (`strerror` says which)."""


def regular_file(path: str | Path) -> os.stat_result:
    """Given a path, return its stat when it is a regular file (symlinks followed).

    Raise UnsafeFileError for a FIFO, device or socket, IsADirectoryError for a folder, and OSError if it cannot be stat'ed.
    """
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFileError(errno.EINVAL, f"not a regular file ({_kind(info.st_mode)}), not read", str(path))
    return info


def read_bytes(path: str | Path, limit: int = RECORD_LIMIT) -> bytes:
    """Given a path, return the bytes of the regular file there, at most `limit` of them.

    Raise UnsafeFileError when it is not a regular file or is larger than `limit`, OSError if
    it cannot be read.
    """
    before = regular_file(path)
    _check_size(path, before.st_size, limit)
    fd = os.open(path, _FLAGS)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(now.st_mode):
            raise UnsafeFileError(errno.EINVAL, "replaced while being opened, not read", str(path))
        chunks = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    _check_size(path, len(data), limit)
    return data


def read_text(path: str | Path, limit: int = RECORD_LIMIT) -> str:
    """Return the file read as `read_bytes` does, decoded as UTF-8 (bad bytes replaced)."""
    return read_bytes(path, limit).decode("utf-8", errors="replace")


def read_head(path: str | Path, size: int) -> bytes:
    """Return the first `size` bytes of the regular file at `path` (however large it is).

    Raise UnsafeFileError when it is not a regular file, OSError if it cannot be read.
    """
    regular_file(path)
    fd = os.open(path, _FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFileError(errno.EINVAL, "replaced while being opened, not read", str(path))
        return os.read(fd, size)
    finally:
        os.close(fd)


def _check_size(path: str | Path, size: int, limit: int) -> None:
    if size > limit:
        raise UnsafeFileError(errno.EFBIG, f"larger than {limit} bytes, not read", str(path))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"
