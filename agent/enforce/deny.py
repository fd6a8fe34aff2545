"""What the exec guards deny: the files, executable names and hashes of entries that block here.

Shared by the fanotify guard, the kill-on-launch poller and the fapolicyd rules writer, so all
three refuse exactly the same programs. Building the set is pure; the one piece of I/O a verdict
may need (hashing a file) is passed in, and verdicts are cached per file content and path
(`VerdictCache`) so an unchanged file reached by the same path is judged once.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Generic, Iterable, Mapping, TypeVar

from agent.config import EnforcementConfig
from agent.enforce.critical import never_denied_program
from agent.match import scope_status
from agent.model import App, BanList, Device, Entry, aware

HASH_CHUNK = 1 << 20
CACHE_LIMIT = 65536
SETTLE_NS = 20_000_000
"""A file changed less than this long ago is judged but its verdict not cached: where a
filesystem stamps changes with the coarse clock (one tick, up to 10 ms), a second change within
the same tick could keep the ctime the verdict was cached under (a change after the guard has
looked at least one tick later gets another ctime). Filesystems with fine-grained ctimes for
changes after a stat (Linux 6.13 multigrain timestamps) need no wait, but cannot be told apart."""


def guard_entries(banlist: BanList, device: Device, config: EnforcementConfig, now: datetime) -> list[Entry]:
    """Given the list in force, return the entries whose programs must not start on this device:
    action block, local mode block, and a violation here — a device with any active exception
    for the entry is left out entirely, since an exec has no finding to weigh it against."""
    if config.mode != "block":
        return []
    anyone = App(source="exec", id="")
    chosen = []
    for entry in banlist.entries:
        if entry.action != "block":
            continue
        excepted = [e for e in banlist.exceptions if e.entry == entry.id and (not e.devices or device.id in e.devices)]
        scoped = scope_status(entry, device, anyone, (), now)
        if scoped is not None and scoped[0] == "violation" and not any(aware(e.expires) > aware(now) for e in excepted):
            chosen.append(entry)
    return chosen


@dataclass(frozen=True)
class DenySet:
    """Programs to deny, each mapped to the entry that bans it, and the files never denied."""

    paths: Mapping[str, str] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)
    sha256: Mapping[str, str] = field(default_factory=dict)
    allowed: frozenset[str] = frozenset()
    """Files never denied: essential, required and base-system packages' files, the shells, the
    agent's interpreter and every file mapped into it — no list may stop the system's own tools."""
    protected: tuple[str, ...] = ()
    """Folders (or files) never denied: the local `protected` paths and the agent's Python trees."""
    refused: str = ""
    """Why this set is empty although the list asks for more (it was over the cap)."""

    def __bool__(self) -> bool:
        return bool(self.paths or self.names or self.sha256)

    def verdict(self, path: str, digest: Callable[[], str]) -> str:
        """Given a program's path and a way to hash it, return the id of the entry that bans it,
        or "" when it may run. The hash is computed only when the list has hashes."""
        return self.judge(path, digest, vouch=False)[0]

    def judge(self, path: str, digest: Callable[[], str], vouch: bool = True) -> tuple[str, bool]:
        """Return the verdict for `path` (as `verdict`) and whether an allow holds for the file's
        bytes by whatever name they are reached: the list has no hashes, or the bytes were hashed
        and are not banned. An exempt file (allowed, protected, on the login path) is allowed
        without a hash; with `vouch` it is hashed to say so, and a hash that passes `digest`'s
        deadline (TimeoutError) leaves it allowed but not vouched for."""
        if self.exempt(path):
            if not self.sha256:
                return "", True
            if not vouch:
                return "", False
            try:
                return "", digest() not in self.sha256
            except TimeoutError:
                return "", False
        entry = self.paths.get(path) or self.names.get(os.path.basename(path).casefold(), "")
        if entry:
            return entry, False
        if not self.sha256:
            return "", True
        entry = self.sha256.get(digest(), "")
        return entry, not entry

    def exempt(self, path: str) -> bool:
        """Return True for a file no list may deny (see `allowed` and `protected`)."""
        return path in self.allowed or never_denied_program(path) \
            or any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.protected)


def deny_set(
    entries: Iterable[Entry], package_paths: Mapping[str, Iterable[str]],
    allowed: Iterable[str] = (), protected: Iterable[str] = (),
) -> DenySet:
    """Given blocking entries, the files of installed packages they ban ({entry id: paths}),
    the files never denied and the local `protected` list (folders, files, names), return the
    DenySet (programs on the shell and login path, `critical.NEVER_DENIED_PROGRAMS`, are left out
    wherever they lie)."""
    entries, protected = list(entries), list(protected)
    hashes: dict[str, str] = {}
    for entry in entries:
        for digest in entry.match.sha256:
            hashes.setdefault(digest, entry.id)
    kept = frozenset(allowed)
    paths = {p: entry for entry, files in package_paths.items() for p in files
             if p not in kept and not never_denied_program(p)}
    return DenySet(
        paths=paths, names=denied_names(entries, protected), sha256=hashes,
        allowed=kept, protected=tuple(p for p in protected if p.startswith("/")),
    )


def denied_names(entries: Iterable[Entry], protected: Iterable[str] = ()) -> dict[str, str]:
    """Return {executable name: entry id} the entries ban by name, leaving out programs on the
    shell and login path and names the local `protected` list holds (paths in it are folders)."""
    held = {p.casefold() for p in protected if not p.startswith("/")}
    names: dict[str, str] = {}
    for entry in entries:
        for name in entry.match.executables:
            if not never_denied_program(name) and name.casefold() not in held:
                names.setdefault(name, entry.id)
    return names


def sha256_fd(fd: int, deadline: float | None = None, clock: Callable[[], float] | None = None) -> str:
    """Return the hex sha256 of an open file (read with pread, so the offset is untouched).

    Raise TimeoutError if `deadline` (a `clock()` reading) passes before the end.
    """
    digest = hashlib.sha256()
    offset = 0
    while True:
        chunk = os.pread(fd, HASH_CHUNK, offset)
        if not chunk:
            return digest.hexdigest()
        digest.update(chunk)
        offset += len(chunk)
        if deadline is not None and clock is not None and clock() > deadline:
            raise TimeoutError("hashing passed the deadline")


def file_key(st: os.stat_result) -> tuple[int, int, int, int]:
    """The identity of a banned package's file as stat'ed when the deny set came in: its mtime,
    not its ctime, so a hard link made later (which changes the ctime) still matches it."""
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


CacheKey = tuple[int, int, int, int, str]


def content_key(st: os.stat_result) -> tuple[int, int, int, int]:
    """The identity of a file's content as far as the kernel vouches for it without reading it:
    device, inode, ctime and size. The ctime changes with every write (an mmap write too),
    truncate, chmod, link and rename, and no user can set it (utimensat sets the mtime back, which
    is why the mtime is no such key)."""
    return (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_size)


V = TypeVar("V")


class VerdictCache(Generic[V]):
    """Verdicts keyed by the file's content (`content_key`) and the path it was reached by, since
    names, package paths and exemptions are per path: a hard link or a bind mount under a banned
    name, or a folder renamed out of a `protected` tree, reaches the same content by a path that
    is judged afresh. Bounded (cleared when full); a guard starts a new one whenever the deny set
    changes. Reads take no lock (one dict lookup is atomic).

    Beside them, allows that need no path (`put(..., anywhere=True)`, `allowed_anywhere`): the
    exec guard's reader then answers a hit with one fstat and one lookup, without reading the
    path (a /proc readlink, the costliest step of a hit). Only for an allow of clean bytes (no
    hash rules, or hashed and not banned) that needed no exemption, of a file with one link — its
    only name is the one it was judged by, since a rename or link would change its ctime; the
    caller vouches that no folder rename can put it at a banned package path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verdicts: dict[CacheKey, V] = {}
        self._anywhere: set[tuple[int, int, int, int]] = set()

    def get(self, st: os.stat_result, path: str) -> V | None:
        return self._verdicts.get(_cache_key(st, path))

    def allowed_anywhere(self, st: os.stat_result) -> bool:
        """Return True when this content was allowed whatever its path (see the class docstring)
        and the file still has its one link."""
        return st.st_nlink == 1 and (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_size) in self._anywhere

    def put(self, st: os.stat_result, path: str, verdict: V, anywhere: bool = False) -> bool:
        """Keep `verdict` (with `anywhere`, also as an allow that needs no path, for a file of one
        link) unless the file changed too recently to tell (`SETTLE_NS`); return True when it
        was kept."""
        if time.time_ns() - st.st_ctime_ns < SETTLE_NS:
            return False
        with self._lock:
            if len(self._verdicts) >= CACHE_LIMIT:
                self._verdicts.clear()
                self._anywhere.clear()
            self._verdicts[_cache_key(st, path)] = verdict
            if anywhere and st.st_nlink == 1:
                self._anywhere.add(content_key(st))
        return True


def _cache_key(st: os.stat_result, path: str) -> CacheKey:
    return (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_size, path)


def renamed_into(paths: Iterable[str]) -> str:
    """Return a folder from which a user could make one of these paths name a file of theirs (by
    creating or renaming a folder on the way, or the file itself), or "" when every folder that
    exists on the way to each is root's and writable by root alone (a sticky folder does not
    count: anyone may create a new folder in it). Package files live in such folders; a list
    whose package paths do not keeps every cached allow tied to its path."""
    seen: set[str] = set()
    for path in paths:
        folder = os.path.dirname(path)
        while folder not in seen:
            seen.add(folder)
            try:
                st = os.stat(folder)
            except FileNotFoundError:
                folder = os.path.dirname(folder)  # created by whoever may write the folder above
                continue
            except OSError:
                return folder
            if st.st_uid != 0 or st.st_mode & 0o022:
                return folder
            if folder == "/":
                break
            folder = os.path.dirname(folder)
    return ""
