"""Kernel-side allow verdicts for the exec guard: fanotify ignore marks on allowed inodes.

Why: every exec on a watched filesystem otherwise wakes the guard's Python reader and waits for
its answer, even when the verdict is a cache hit. After an allow, an inode mark whose ignore mask
holds FAN_OPEN_EXEC_PERM makes the kernel itself stop asking about that inode. The mark is added
without FAN_MARK_IGNORED_SURV_MODIFY, so the first write to the file (or a truncate) clears it
and the next exec is judged again.

When a verdict may be kept in the kernel (`kernel_may_keep`) and how the marks are kept safe
(flushed before a new deny set is in force, capped, never for a denied, failed or deadline
answer) is written down in docs/enforcement.md, "Ignore marks". This module is the mechanism:
add, remove, flush and count, one lock, and a generation number that a deny-set change bumps so
that a verdict made under the old set can never be marked under the new one.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import stat
import threading
from typing import Callable

from agent.log import log_event

logger = logging.getLogger(__name__)

FAN_MARK_ADD, FAN_MARK_REMOVE, FAN_MARK_FLUSH = 0x1, 0x2, 0x80
FAN_MARK_IGNORED_MASK, FAN_MARK_EVICTABLE, FAN_MARK_IGNORE = 0x20, 0x200, 0x400
FAN_OPEN_EXEC_PERM = 0x40000

MARK_LIMIT = 4096
"""Ignore marks one guard holds at most; when full they are all flushed (the hot files are marked
again on their next exec). Also capped at a quarter of fs.fanotify.max_user_marks, which every
fanotify user of root (fapolicyd, another agent) shares."""
MAX_USER_MARKS = "/proc/sys/fs/fanotify/max_user_marks"
PROTECTED_HARDLINKS = "/proc/sys/fs/protected_hardlinks"

FLAG_CHOICES = (
    FAN_MARK_IGNORE | FAN_MARK_EVICTABLE,        # Linux >= 6.0
    FAN_MARK_IGNORED_MASK | FAN_MARK_EVICTABLE,  # Linux >= 5.19
    FAN_MARK_IGNORED_MASK,                       # any fanotify kernel
)
"""Tried in order; the first the kernel accepts is kept. Evictable marks do not pin the inode in
memory: under memory pressure the kernel drops the mark with the inode, and the next exec of the
file just reaches the guard again."""

LOCAL_FILESYSTEMS = frozenset({
    0xEF53,      # ext2, ext3, ext4
    0x58465342,  # xfs
    0x9123683E,  # btrfs
    0x01021994,  # tmpfs
    0x858458F6,  # ramfs
    0xF2F52010,  # f2fs
    0x794C7630,  # overlay
    0x73717368,  # squashfs
    0xE0F5E1E2,  # erofs
    0x00009660,  # iso9660
    0x2FC12FC1,  # zfs
    0xCA451A4E,  # bcachefs
})
"""Filesystems whose files change only through this kernel, so a write always clears the mark.
Not here, so never marked: network filesystems (another client writes without a local event),
FUSE (a user's daemon can serve other bytes at any time), FAT-like ones (owner and mode are mount
options, not the file's)."""

_STATFS_SIZE = 256


def kernel_may_keep(st: os.stat_result, fs_magic: Callable[[], int],
                    folder: Callable[[], os.stat_result | None]) -> bool:
    """Given a file's stat, and ways to read its filesystem's magic number and the stat of the
    folder it was reached in (None if that cannot be read; both asked only when the file's stat
    passes), return True when only root can change its bytes or give it another name: a regular
    root-owned file, writable by nobody else, with one link, on a local filesystem, in a folder
    owned by root that no one else can write to (or a sticky one, where no one else may rename
    root's files). A user's mmap write changes a file without the event that clears an ignore
    mark, and a user's rename or link would reach the same inode by a name a rule may ban."""
    if not (stat.S_ISREG(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022 and st.st_nlink == 1):
        return False
    if fs_magic() not in LOCAL_FILESYSTEMS:
        return False
    parent = folder()
    return parent is not None and parent.st_uid == 0 and (not parent.st_mode & 0o022 or bool(parent.st_mode & stat.S_ISVTX))


def hardlinks_protected(path: str = PROTECTED_HARDLINKS) -> bool:
    """Return True when users may not hard-link files they cannot write (fs.protected_hardlinks),
    without which a user could give root's kept file a second, banned name."""
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip() == "1"
    except OSError:
        return False


def user_mark_limit(limit: int = MARK_LIMIT, path: str = MAX_USER_MARKS) -> int:
    """Return the cap for one guard: `limit`, or a quarter of the kernel's per-user budget if less."""
    try:
        with open(path, encoding="ascii") as handle:
            return min(limit, int(handle.read()) // 4)
    except (OSError, ValueError):
        return limit


class IgnoreMarks:
    """The ignore marks of one fanotify group (see the module docstring). Thread-safe."""

    def __init__(self, libc: ctypes.CDLL, fan: int, limit: int) -> None:
        self._libc = libc
        self._fan = fan
        self.limit = limit
        self.held = 0
        """Marks added since the last flush (an evicted mark is still counted: the count errs high)."""
        self.generation = 0
        self.lock = threading.Lock()
        self._choices = FLAG_CHOICES if limit > 0 else ()

    def fs_magic(self, fd: int) -> int:
        """Return the magic number of the filesystem `fd` is on (0 when fstatfs fails)."""
        buffer = ctypes.create_string_buffer(_STATFS_SIZE)
        if self._libc.fstatfs(fd, buffer) != 0:
            return 0
        return ctypes.c_long.from_buffer(buffer).value & 0xFFFFFFFF

    def add(self, fd: int, generation: int, still_same: Callable[[], bool]) -> bool:
        """Mark the file behind `fd` if no deny-set change happened since `generation` was read
        and `still_same()` (called after the mark is in place) confirms the file was not changed
        while it was judged. Return True when a mark was left in place."""
        with self.lock:
            if generation != self.generation or not self._choices:
                return False
            if self.held >= self.limit and not self._flush():
                return False
            while self._choices:
                if self._mark(FAN_MARK_ADD | self._choices[0], fd):
                    self.held += 1
                    try:
                        same = still_same()
                    except OSError:
                        same = False
                    if same:
                        return True
                    if not self._mark(FAN_MARK_REMOVE | self._choices[0], fd):
                        self._flush()
                    return False
                err = ctypes.get_errno()
                if err == errno.ENOSPC:  # the user's mark budget is spent: give ours back
                    self._flush()
                    return False
                if err not in (errno.EINVAL, errno.EOPNOTSUPP):
                    return False
                self._choices = self._choices[1:]
            log_event(logger, logging.WARNING, "execguard.ignore_marks_unsupported")
            return False

    def renew(self, change: Callable[[], None]) -> None:
        """Make `change` (a new deny set) and drop every ignore mark, under the lock, so no
        verdict of the old set stays in the kernel once this returns. Only the group's inode
        marks are flushed: its filesystem and mount marks, which make the guard see execs at all,
        stay. Raise OSError if the kernel refuses the flush."""
        with self.lock:
            change()
            self.generation += 1
            if not self._flush():
                raise OSError(ctypes.get_errno(), f"fanotify flush of ignore marks: {os.strerror(ctypes.get_errno())}")

    def _flush(self) -> bool:
        if self._libc.fanotify_mark(self._fan, FAN_MARK_FLUSH, 0, -1, None) != 0:
            return False
        self.held = 0
        return True

    def _mark(self, flags: int, fd: int) -> bool:
        return self._libc.fanotify_mark(self._fan, flags, FAN_OPEN_EXEC_PERM, fd, None) == 0
