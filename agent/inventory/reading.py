"""Reading files that anyone may have planted: inside the root, regular files only, bounded, never blocking.

Collectors read launchers, property lists, keyfiles, manifests and package databases from users'
home folders and from mounted images, as root. Three kinds of trick are refused here, in the one
place every collector reads through:

- **Files that block or never end.** A FIFO named `x.desktop` would block a plain `open()`
  forever, a link to /dev/zero would be read until memory runs out, and opening some devices has
  effects of its own. Each file is `lstat`-ed before it is opened, opened with O_NONBLOCK and
  O_NOFOLLOW, checked again with `fstat` (the very inode that was looked at) and read up to a cap.
- **Links out of the root.** A path is resolved component by component from a folder descriptor
  of the root, never by the host's own path lookup: an absolute link target means the root's own
  file (as the image's system would read it) and `..` stops at the root, as with openat2's
  RESOLVE_IN_ROOT — so a link in a mounted image can never make the scan read the host's files.
  Where the kernel has openat2 (Linux 5.6), a path without any link is resolved in one call with
  RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS; a path with links is walked here,
  so that the rule below can be applied to each link.
- **Links that borrow root's eyes.** A link in a folder a user can write (their home, or any
  group- or world-writable folder) is followed only to a file that user could read themselves:
  owned by them and readable by its owner, or readable by everyone, in folders they can search.
  Otherwise a user could make a root-run collector read /etc/shadow or another user's files into a
  report. A file with a second hard link in such a folder is held to the same rule. Group
  permissions are not counted (a group's members are not known on an image), so this can refuse a
  file the user could in fact read through a group, never the other way round.

A refused file raises an OSError whose `strerror` says why in one line; collectors turn it into
one error for that file and go on with the rest. Windows has no descriptor-relative lookups; there
the plain regular-file checks and the cap still hold.
"""

from __future__ import annotations

import errno
import functools
import operator
import os
import stat
from pathlib import Path

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Callable, Iterable, Iterator, TypeVar

RECORD_LIMIT = 4 * 1024 * 1024
"""One record: a launcher, an Info.plist, a keyfile, an assertion, a manifest."""
DATABASE_LIMIT = 256 * 1024 * 1024
"""A whole package database (dpkg's status, snapd's state.json, a registry hive): tens of MB on a large system."""
MAX_LINKS = 40
"""Links followed while resolving one path, as Linux allows (MAXSYMLINKS): a loop ends here."""
ANYONE = -1
"""Stands for "any user" among those who could have planted a link (a group- or world-writable folder)."""

_FILE = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FOLDER = (getattr(os, "O_PATH", 0) or os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_LISTABLE = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_WALKS = all(f in os.supports_dir_fd for f in (os.open, os.stat, os.readlink)) and bool(_NOFOLLOW)
"""Descriptor-relative lookups exist (Linux, macOS, the BSDs; not Windows)."""


class UnsafeFileError(OSError):
    """A file that is not read: not a regular file, over its size cap, reached through a link that
    is not followed, or replaced while it was opened (`strerror` says which)."""


class DanglingLinkError(FileNotFoundError):
    """A link whose target does not exist inside the root (it may well exist on this host: a link
    in an image to the host's files, or one a user planted); unlike a plain missing file, worth an error."""


_CHUNK = 1024 * 1024
"""Bytes asked for per read past the size `fstat` gave (a file that grew; /proc's files, size 0)."""


def read_bytes(path: str | Path, limit: int = RECORD_LIMIT, *, root: str | Path = "/") -> bytes:
    """Given a path under `root`, return the bytes of the regular file there, at most `limit` of them.

    Raise UnsafeFileError when it is not a regular file, is larger than `limit` or is reached
    through a link that is refused, FileNotFoundError when it does not exist inside the root,
    IsADirectoryError for a folder, OSError if it cannot be read.

    The first read asks for the size `fstat` gave, plus one byte to see a file that grew: the
    whole file then comes in one bytes object, never copied again (read in 1 MiB chunks and
    joined, dpkg's 4 MB status took 2.4 ms to read where one read takes 0.3).
    """
    fd, info = open_regular(path, limit, root=root)
    try:
        chunks = []
        left = limit + 1
        size = info.st_size + 1 if info.st_size else _CHUNK
        while left > 0:
            chunk = os.read(fd, min(left, size))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
            size = _CHUNK
    finally:
        os.close(fd)
    data = b"".join(chunks)
    _check_size(path, len(data), limit)
    return data


def read_text(path: str | Path, limit: int = RECORD_LIMIT, *, root: str | Path = "/") -> str:
    """Return the file read as `read_bytes` does, decoded as UTF-8 (bad bytes replaced)."""
    return read_bytes(path, limit, root=root).decode("utf-8", errors="replace")


def read_head(path: str | Path, size: int, *, root: str | Path = "/") -> bytes:
    """Return the first `size` bytes of the regular file at `path` under `root` (however large it is).

    Raise as `read_bytes` does, except for the size cap.
    """
    fd, _ = open_regular(path, root=root)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def open_regular(path: str | Path, limit: int | None = None, *, root: str | Path = "/") -> tuple[int, os.stat_result]:
    """Given a path under `root`, return a read-only descriptor of the regular file found there by
    the rules above, and its `fstat`. The caller closes the descriptor. Raise as `read_bytes`
    does (UnsafeFileError when the file is larger than `limit`, if one is given).

    Why a descriptor: a reader that takes a file name (regipy) can be given `open(fd)` and reads
    exactly the inode that was checked, never the path again.
    """
    if not _WALKS:
        fd, info = _open_plain(path)
    else:
        with _Walk(root) as walk:
            fd, info = walk.open_file(_parts(path, root), str(path))
    if limit is not None and info.st_size > limit:
        os.close(fd)
        _check_size(path, info.st_size, limit)
    return fd, info


if TYPE_CHECKING:
    _Selected = TypeVar("_Selected")


def folder_entries(path: str | Path, *, root: str | Path = "/") -> list[tuple[str, os.stat_result]]:
    """Given a folder under `root`, return (name, lstat) of each entry, sorted by name; links are
    not followed (an entry's stat is the link's own). The folder itself is found by the rules above.

    Raise FileNotFoundError / NotADirectoryError when there is no such folder inside the root,
    UnsafeFileError when it is reached through a link that is refused, OSError if it cannot be listed.
    """
    return folder_scan(path, _lstats, root=root)


def folder_scan(path: str | Path, select: Callable[[Iterator[os.DirEntry[str]]], _Selected], *,
                root: str | Path = "/") -> _Selected:
    """Given a folder under `root`, return what `select` makes of its entries (os.scandir's, in
    the folder's order), handed over while the folder is held open: an entry's `stat` is taken
    relative to that descriptor. The folder itself is found by the rules above.

    Why: a search that keeps few of many entries (the AppImage search: ~1,900 under /opt, of
    which it keeps none here) tells folders and links apart by the listing's d_type, lstats only
    what it may keep, and sorts only what it keeps. Raise as `folder_entries` does (and what
    `select` raises).
    """
    if not _WALKS:
        with os.scandir(path) as entries:
            return select(entries)
    with _Walk(root) as walk:
        fd = walk.open_folder(_parts(path, root), str(path))
        try:
            with os.scandir(fd) as entries:
                return select(entries)
        finally:
            os.close(fd)


def _lstats(entries: Iterable[os.DirEntry[str]]) -> list[tuple[str, os.stat_result]]:
    """Return (name, lstat) of the entries still there when each is looked at, by name (sorted
    on the names alone: comparing (name, stat) pairs costs twice as much)."""
    known = []
    for entry in sorted(entries, key=_NAME):
        try:
            known.append((entry.name, entry.stat(follow_symlinks=False)))
        except FileNotFoundError:
            continue
    return known


_NAME = operator.attrgetter("name")


def exists(path: str | Path, *, root: str | Path = "/", folder: bool = False) -> bool:
    """Return whether anything (a folder, with `folder=True`) is at `path` inside `root`, links
    resolved by the rules above: what a collector checks before it looks further.

    Something that is there but would be refused (a FIFO, a link a user planted to root's file, a
    file link whose target is not inside the root) counts as there, so that reading it reports the
    refusal as one error instead of passing unseen. A folder link whose target is missing does not:
    a user's Desktop linked to a drive that is not plugged in is common, and no error.
    """
    if not _WALKS:
        return os.path.isdir(path) if folder else os.path.exists(path)
    try:
        with _Walk(root) as walk:
            _, info = walk.resolve(_parts(path, root), str(path))
    except DanglingLinkError:  # a link out of the root (or to nothing): reading a file will say where it leads
        return not folder
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:  # a loop, or a folder that cannot be searched: reading it will say why
        return True
    return stat.S_ISDIR(info.st_mode) or not folder


def link_target(path: str | Path, *, root: str | Path = "/") -> str:
    """Return the text of the link at `path` under `root` (its folders found by the rules above).
    Raise OSError (EINVAL) when it is not a link, FileNotFoundError when there is none."""
    if not _WALKS:
        return os.readlink(path)
    parts = _parts(path, root)
    if not parts:
        raise OSError(errno.EINVAL, "not a link", str(path))
    with _Walk(root) as walk:
        fd = walk.open_folder(parts[:-1], str(path))
        try:
            return os.readlink(parts[-1], dir_fd=fd)
        finally:
            os.close(fd)


def host_path(path: str | Path, *, root: str | Path = "/") -> Path:
    """Return the path on this host of the regular file found at `path` under `root`, with every
    link already resolved, for an external tool (unsquashfs) that opens files by name itself.

    Why this is weaker than a descriptor: the tool opens the path again later, so a folder swapped
    for a link in between would be followed; it is used only where no descriptor can be handed over.
    """
    if not _WALKS:
        return Path(path)
    with _Walk(root) as walk:
        fd, _ = walk.open_file(_parts(path, root), str(path))
        os.close(fd)
        return Path(root).joinpath(*walk.names[1:], walk.final)


def _parts(path: str | Path, root: str | Path) -> list[str]:
    """Return the components of `path` below `root` (lexically: neither is resolved yet).

    Why string work and not PurePosixPath.relative_to: this runs for every file read, and pathlib
    cost more than the reading itself.
    """
    text = os.fspath(path)
    if not text.startswith("/"):
        text = os.path.abspath(text)
    parts = [p for p in text.split("/") if p and p != "."]
    prefix = [p for p in os.path.abspath(os.fspath(root)).split("/") if p]
    if parts[:len(prefix)] != prefix:
        raise UnsafeFileError(errno.EXDEV, f"not inside the root {root}, not read", str(path))
    return parts[len(prefix):]


class _Walk:
    """One resolution from a root: the folders from the root down (descriptor, lstat, name), the
    links followed and who could have planted them.

    Why a walk and not realpath + open: each step is taken from a descriptor already held, with
    O_NOFOLLOW, so a folder swapped for a link half-way cannot redirect the read, and the
    rule on links in user-writable folders can look at each link's folder.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = os.fspath(root)
        fd = os.open(self.root, _FOLDER & ~_NOFOLLOW)  # the root itself is the administrator's choice
        self.fds = [fd]
        self.stats = [os.fstat(fd)]
        self.names = [""]
        self.final = ""
        self.links = 0
        self.writers: set[int] = set()
        self.in_target: int | None = None
        """While a link's target is being walked, the number of components left once it is done."""

    def __enter__(self) -> _Walk:
        return self

    def __exit__(self, *_: object) -> None:
        for fd in self.fds:
            os.close(fd)

    def open_file(self, parts: list[str], path: str) -> tuple[int, os.stat_result]:
        """Resolve `parts` to a regular file; return its descriptor and fstat."""
        fast = _fast_open(self.fds[0], parts)
        if fast is not None:
            self.names += parts[:-1]
            self.final = parts[-1]
            return fast
        name, info = self.resolve(parts, path)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", path)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(errno.EINVAL, f"not a regular file ({_kind(info.st_mode)}), not read", path)
        writers = self.writers | (_writers(self.stats[-1]) if info.st_nlink > 1 else set())
        self._check_readable(info, stat.S_IRUSR, writers, name, path)
        fd = os.open(name, _FILE | _NOFOLLOW, dir_fd=self.fds[-1])
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino) or not stat.S_ISREG(now.st_mode):
            os.close(fd)
            raise UnsafeFileError(errno.EINVAL, "replaced while being opened, not read", path)
        self.final = name
        return fd, now

    def open_folder(self, parts: list[str], path: str) -> int:
        """Resolve `parts` to a folder; return a descriptor it can be listed through."""
        name, info = self.resolve(parts, path)
        if not stat.S_ISDIR(info.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", path)
        self._check_readable(info, stat.S_IRUSR | stat.S_IXUSR, self.writers, name, path)
        fd = os.open(name, _LISTABLE, dir_fd=self.fds[-1])
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            os.close(fd)
            raise UnsafeFileError(errno.EINVAL, "replaced while being opened, not read", path)
        return fd

    def resolve(self, parts: list[str], path: str) -> tuple[str, os.stat_result]:
        """Walk to the last component of `parts`, following links inside the root; return its name
        (relative to the last folder held; "." for that folder itself) and its lstat."""
        todo = list(reversed(parts))
        while todo:
            name = todo.pop()
            if name == "..":
                self._up()
                continue
            try:
                info = os.stat(name, dir_fd=self.fds[-1], follow_symlinks=False)
            except FileNotFoundError:
                raise self._missing("/".join([name, *reversed(todo)]), len(todo) + 1, path) from None
            if stat.S_ISLNK(info.st_mode):
                self._follow(name, todo, path)
            elif todo:
                if not stat.S_ISDIR(info.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, f"{self._here(name)} is not a folder", path)
                self._down(name, info, path)
            else:
                return name, info
        return ".", self.stats[-1]

    def _follow(self, name: str, todo: list[str], path: str) -> None:
        self.links += 1
        if self.links > MAX_LINKS:
            raise UnsafeFileError(errno.ELOOP, f"more than {MAX_LINKS} links on the way (a loop?), not read", path)
        target = os.readlink(name, dir_fd=self.fds[-1])
        self.writers |= _writers(self.stats[-1])
        self.in_target = len(todo) if self.in_target is None else min(self.in_target, len(todo))
        if target.startswith("/"):
            while len(self.fds) > 1:
                self._up()
        todo.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))

    def _down(self, name: str, info: os.stat_result, path: str) -> None:
        fd = os.open(name, _FOLDER, dir_fd=self.fds[-1])
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            os.close(fd)
            raise UnsafeFileError(errno.EINVAL, f"{self._here(name)} replaced while being read, not read", path)
        self.fds.append(fd)
        self.stats.append(now)
        self.names.append(name)

    def _up(self) -> None:
        if len(self.fds) > 1:  # `..` at the root stays there, as it does at "/"
            os.close(self.fds.pop())
            self.stats.pop()
            self.names.pop()

    def _check_readable(self, info: os.stat_result, need: int, writers: set[int], name: str, path: str) -> None:
        """Refuse when a user who could have planted a link on the way could not read the target
        (`need`: owner bits wanted) or search a folder leading to it."""
        for uid in sorted(writers):
            folders_ok = all(_allows(uid, folder, stat.S_IXUSR) for folder in self.stats[1:])
            if not (folders_ok and _allows(uid, info, need)):
                who = "any user" if uid == ANYONE else f"user {uid}"
                raise UnsafeFileError(errno.EACCES, f"reached through a link {who} could have planted, to "
                                                    f"{self._here(name)}, which {who} cannot read; not read",
                                      path)

    def _here(self, name: str) -> str:
        return "/" + "/".join([*self.names[1:], *([name] if name not in ("", ".") else [])])

    def _missing(self, name: str, left: int, path: str) -> FileNotFoundError:
        """Return the error for a component not found with `left` components to go (it included):
        a dangling link when it is part of a link's target, else a plain missing file (merged-/usr
        `/lib -> usr/lib` is a link, but a missing `/lib/apk` is just missing)."""
        if self.in_target is None or left <= self.in_target:
            return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return DanglingLinkError(errno.ENOENT, f"a link leads to {self._here(name)}, which does not exist inside "
                                               f"the root {self.root}", path)


def _writers(folder: os.stat_result) -> set[int]:
    """Return who could have put a link in `folder`: its owner unless root (an owner can always
    grant themselves write), and any user when it is group- or world-writable."""
    found = {folder.st_uid} if folder.st_uid != 0 else set()
    if folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        found.add(ANYONE)
    return found


def _allows(uid: int, info: os.stat_result, need: int) -> bool:
    """Return whether the mode bits let `uid` do `need` (given as owner bits: S_IRUSR, S_IXUSR)."""
    other = need >> 6
    if info.st_mode & other == other:
        return True
    return uid != ANYONE and info.st_uid == uid and info.st_mode & need == need


WALKED_FIRST = 64
"""Files opened by the walk alone before openat2 is loaded: loading it (ctypes) costs about what
walking a hundred short paths does, so a command that reads a few files (`appban check --source
dpkg` reads three) does not pay for it (issue 14); the two give the same answers."""
_walked = 0


def _fast_open(root_fd: int, parts: list[str]) -> tuple[int, os.stat_result] | None:
    """Open a path with no link anywhere on it in one openat2 call (folders) plus the usual checks
    on the file; return None when openat2 is missing or the path has a link, and for the first
    WALKED_FIRST files (the walk decides)."""
    global _walked
    if _walked < WALKED_FIRST:
        _walked += 1
        return None
    openat2 = _openat2()
    if openat2 is None or not parts or ".." in parts:
        return None
    parent = openat2(root_fd, "/".join(parts[:-1]) or ".")
    if parent is None:
        return None
    try:
        info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            return None  # the walk gives the exact refusal, and judges a second hard link
        fd = os.open(parts[-1], _FILE | _NOFOLLOW, dir_fd=parent)
    except OSError:
        return None
    finally:
        os.close(parent)
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
        os.close(fd)
        return None
    return fd, now


_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_IN_ROOT = 0x02, 0x04, 0x10
_SYS_OPENAT2 = 437  # the same number on every Linux architecture (added after the syscall tables were unified)


@functools.cache
def _openat2() -> Callable[[int, str], int | None] | None:
    """Return a function opening a folder below a root descriptor with openat2 (no links, nothing
    outside the root), or None where the kernel or the platform has none.

    Why ctypes: Python has no binding for openat2; it is loaded on first use, never at import.
    """
    if not hasattr(os, "O_PATH"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None

    class OpenHow(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

    how = OpenHow(os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0,
                  _RESOLVE_IN_ROOT | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    syscall.restype = ctypes.c_long

    def openat2(dirfd: int, path: str) -> int | None:
        fd = syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), os.fsencode(path), ctypes.byref(how),
                     ctypes.c_size_t(ctypes.sizeof(how)))
        return fd if fd >= 0 else None

    probe = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        works = openat2(probe, ".")
    finally:
        os.close(probe)
    if works is None:  # ENOSYS before Linux 5.6, or refused by a seccomp filter
        return None
    os.close(works)
    return openat2


def _open_plain(path: str | Path) -> tuple[int, os.stat_result]:
    """Where there are no descriptor-relative lookups: stat first, open without blocking, compare."""
    before = os.stat(path)
    if stat.S_ISDIR(before.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
    if not stat.S_ISREG(before.st_mode):
        raise UnsafeFileError(errno.EINVAL, f"not a regular file ({_kind(before.st_mode)}), not read", str(path))
    fd = os.open(path, _FILE)
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(now.st_mode):
        os.close(fd)
        raise UnsafeFileError(errno.EINVAL, "replaced while being opened, not read", str(path))
    return fd, now


def _check_size(path: str | Path, size: int, limit: int) -> None:
    if size > limit:
        raise UnsafeFileError(errno.EFBIG, f"larger than {limit} bytes, not read", str(path))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"
