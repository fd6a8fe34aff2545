"""The exec guard: deny the start of banned programs before their first instruction runs.

It uses fanotify exec-permission events, as fapolicyd does: the kernel holds every execve of a
file on the watched filesystems until the guard answers FAN_ALLOW or FAN_DENY, and a denied execve
fails with EPERM. Verdicts come from a cache keyed by the file's (device, inode, ctime, size) and
its path (deny.VerdictCache), read by the answering thread itself; a verdict that
would take longer than the deadline (hashing a large file) is answered with the fail mode at once
and finished in the background for next time. An internal error answers allow (fail-open, logged
and counted) unless `fail_closed` is set; the guard's own process is always allowed. `stats`
counts answers and the time spent deciding them (`decide_ns`), for metrics and the benchmark.

An allow that holds for the file's bytes under any name, for a file only root can change, is also
left in the kernel as an ignore mark (agent/enforce/ignoremarks.py), so the next execs of that
file never wake the guard; a write to the file or a new deny set clears it. `stats["marked"]`
counts the marks added.

The service runs it in a worker process (agent/enforce/guardprocess.py), so answers never wait
for the agent's GIL; on its own it is used as:

    guard = ExecGuard(deny_set, mounts=("/",))
    guard.start()          # raises GuardUnavailable without fanotify / CAP_SYS_ADMIN
    ...
    guard.update(new_set)  # after a new list or scan
    guard.stop()           # closing the group lets the kernel allow anything still pending
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import queue
import select
import stat
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from agent.enforce.deny import DenySet, VerdictCache, content_key, file_key, renamed_into, sha256_fd
from agent.enforce.ignoremarks import IgnoreMarks, hardlinks_protected, kernel_may_keep, user_mark_limit
from agent.log import log_event

logger = logging.getLogger(__name__)

FAN_CLOEXEC, FAN_NONBLOCK, FAN_CLASS_CONTENT = 0x1, 0x2, 0x4
FAN_MARK_ADD, FAN_MARK_MOUNT, FAN_MARK_FILESYSTEM = 0x1, 0x10, 0x100
FAN_OPEN_EXEC_PERM = 0x40000
FAN_Q_OVERFLOW = 0x4000
FAN_ALLOW, FAN_DENY = 0x1, 0x2
FAN_NOFD = -1
AT_FDCWD = -100

_METADATA = struct.Struct("=IBBHQii")
_RESPONSE = struct.Struct("=iI")
_READ_SIZE = 64 * 1024

PSEUDO_FILESYSTEMS = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "tracefs", "securityfs",
    "pstore", "bpf", "configfs", "fusectl", "hugetlbfs", "autofs", "binfmt_misc", "rpc_pipefs",
    "nsfs", "efivarfs", "selinuxfs", "devtmpfs",
})


Verdict = tuple[str, bool]
"""What the cache holds per file: the banning entry ("" to allow) and whether an allow holds for
the file's bytes by any name (see DenySet.judge), which an ignore mark needs."""
_LateWork = tuple[os.stat_result, str, "VerdictCache[Verdict]", DenySet, bool]
"""A verdict that missed its deadline: the file's stat, path, the cache and deny set it belongs
to, and whether an allow of it may be cached without its path."""
_Keep = tuple[int, os.stat_result]
"""An allow the kernel may keep: the deny-set generation it was made under and the file's stat."""
_Banned = dict[tuple[int, int, int, int], str]
"""A deny set's banned package files by inode (`banned_files`)."""
_State = tuple[int, "VerdictCache[Verdict]", DenySet, _Banned, bool]
"""What one verdict is made under, swapped as one: the deny-set generation, the verdict cache,
the deny set, its banned package files by inode (`banned_files`) and whether allows may be cached
without their path (no user can put a file at one of its package paths: `deny.renamed_into`)."""


class GuardUnavailable(RuntimeError):
    """fanotify cannot be used here (old kernel, no CAP_SYS_ADMIN, seccomp); the message says why."""


@dataclass(frozen=True)
class Denial:
    """One refused exec: what, by whom, and which entry banned it."""

    path: str
    pid: int
    entry: str


def exec_mounts(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Return the mount points of real filesystems (those programs can be started from)."""
    points = []
    with open(mountinfo, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            fstype = right.split(" ", 1)[0]
            point = left.split(" ")[4].replace("\\040", " ")
            if fstype not in PSEUDO_FILESYSTEMS and point not in points:
                points.append(point)
    return points


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
    libc.fanotify_init.restype = ctypes.c_int
    libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
    libc.fanotify_mark.restype = ctypes.c_int
    return libc


class ExecGuard:
    """A fanotify exec-permission guard running in its own thread (see the module docstring)."""

    def __init__(
        self, deny: DenySet, mounts: Sequence[str] = (), deadline: float = 0.25,
        fail_closed: bool = False, on_deny: Callable[[Denial], None] | None = None,
        allow_pids: frozenset[int] = frozenset(), mark_limit: int | None = None,
    ) -> None:
        self.deny = deny
        self.mounts = tuple(mounts)
        self.deadline = deadline
        self.fail_closed = fail_closed
        self.on_deny = on_deny
        self.stats: Counter[str] = Counter()
        self.mark_limit = user_mark_limit() if mark_limit is None else mark_limit
        self._state: _State = (0, VerdictCache(), deny, banned_files(deny), _path_free(deny))
        self._marks: IgnoreMarks | None = None
        self._own = frozenset({os.getpid(), *allow_pids})
        self._fan = -1
        self._wake: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._helpers: list[threading.Thread] = []
        self._late: queue.Queue[tuple[int, _LateWork | None]] = queue.Queue(maxsize=64)
        self._denials: queue.Queue[Denial | None] = queue.Queue()

    def start(self) -> None:
        """Open the fanotify group, mark every mount and start answering. Raise GuardUnavailable."""
        libc = _libc()
        fan = libc.fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK,
                                 os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC)
        if fan < 0:
            raise GuardUnavailable(f"fanotify_init: {os.strerror(ctypes.get_errno())}")
        try:
            for mount in self.mounts or exec_mounts():
                self._mark(libc, fan, mount)
        except GuardUnavailable:
            os.close(fan)
            raise
        self._fan = fan
        limit = self.mark_limit if hardlinks_protected() else 0
        if self.mark_limit and not limit:
            log_event(logger, logging.WARNING, "execguard.no_ignore_marks", reason="fs.protected_hardlinks is off")
        self._marks = IgnoreMarks(libc, fan, limit)
        self._wake = os.pipe2(os.O_CLOEXEC)
        threads = [threading.Thread(target=self._loop, name="appban-execguard", daemon=True),
                   threading.Thread(target=self._background, name="appban-execguard-late", daemon=True),
                   threading.Thread(target=self._report, name="appban-execguard-report", daemon=True)]
        for thread in threads:
            thread.start()
        self._thread, self._helpers = threads[0], threads[1:]
        log_event(logger, logging.INFO, "execguard.started", mounts=",".join(self.mounts) or "all",
                  paths=len(self.deny.paths), names=len(self.deny.names), hashes=len(self.deny.sha256))

    @staticmethod
    def _mark(libc: ctypes.CDLL, fan: int, mount: str) -> None:
        """Watch a whole filesystem (every mount of it); fall back to the one mount when the
        filesystem cannot be marked (no fsid, e.g. some FUSE or overlay setups)."""
        for how in (FAN_MARK_FILESYSTEM, FAN_MARK_MOUNT):
            if libc.fanotify_mark(fan, FAN_MARK_ADD | how, FAN_OPEN_EXEC_PERM, AT_FDCWD, os.fsencode(mount)) == 0:
                return
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.EXDEV, errno.ENODEV, errno.EOPNOTSUPP):
                break
        raise GuardUnavailable(f"fanotify_mark {mount}: {os.strerror(err)}")

    def update(self, deny: DenySet) -> None:
        """Use a new deny set from now on, with a fresh verdict cache (a verdict still being made
        under the old set lands in the old cache, never in the new one), and drop every ignore
        mark before returning, so a file the new set bans is judged at its next exec. Raise
        OSError if the kernel refuses to drop them."""
        banned, path_free = banned_files(deny), _path_free(deny)
        marks = self._marks

        def change() -> None:
            # renew() bumps the marks' generation to this number right after, under its lock:
            # a verdict of the new set made before the bump is refused a mark, and one of the
            # old set can never be marked under the new.
            self._state = ((marks.generation + 1) if marks else 0, VerdictCache(), deny, banned, path_free)
            self.deny = deny

        if marks is None:
            change()
        else:
            marks.renew(change)

    def stop(self) -> None:
        """Stop answering and close the group; the kernel then allows every pending exec."""
        if self._thread is None or self._wake is None:
            return
        os.write(self._wake[1], b"x")
        self._thread.join()
        self._late.put((-1, None))
        self._denials.put(None)
        for helper in self._helpers:
            helper.join()
        os.close(self._fan)
        for fd in self._wake:
            os.close(fd)
        self._fan, self._wake, self._thread, self._marks = -1, None, None, None
        log_event(logger, logging.INFO, "execguard.stopped", **dict(self.stats))

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _loop(self) -> None:
        assert self._wake is not None
        wake = self._wake[0]
        poller = select.poll()
        poller.register(self._fan, select.POLLIN)
        poller.register(wake, select.POLLIN)
        while True:
            if any(fd == wake for fd, _ in poller.poll()):
                return
            try:
                data = os.read(self._fan, _READ_SIZE)
            except BlockingIOError:
                continue
            except OSError as exc:
                # e.g. EMFILE: the kernel could not open the event's file for us and has denied
                # that exec itself; the loop must live on, or every later exec would wait forever.
                self.stats["errors"] += 1
                log_event(logger, logging.ERROR, "execguard.read_failed", error=os.strerror(exc.errno or 0))
                time.sleep(0.01)
                continue
            self._answer_all(data)

    def _answer_all(self, data: bytes) -> None:
        offset = 0
        while offset + _METADATA.size <= len(data):
            length, _vers, _res, _mlen, mask, fd, pid = _METADATA.unpack_from(data, offset)
            offset += length or _METADATA.size
            if mask & FAN_Q_OVERFLOW or fd == FAN_NOFD:
                self.stats["overflow"] += 1
                continue
            began = time.perf_counter_ns()
            keep: _Keep | None = None
            try:
                entry, keep = self._decide(fd, pid)
                allow = entry == ""
            except Exception as exc:  # noqa: BLE001 - a guard bug must never wedge every exec
                self.stats["errors"] += 1
                log_event(logger, logging.ERROR, "execguard.error", pid=pid, error=f"{type(exc).__name__}: {exc}")
                allow, entry = not self.fail_closed, ""
            self.stats["decide_ns"] += time.perf_counter_ns() - began
            try:
                os.write(self._fan, _RESPONSE.pack(fd, FAN_ALLOW if allow else FAN_DENY))
                self.stats["allowed" if allow else "denied"] += 1
                if not allow and entry:
                    self._denials.put(Denial(_fd_path(fd), pid, entry))
                elif allow and keep is not None:
                    self._keep(fd, keep)
            except OSError as exc:
                self.stats["errors"] += 1
                log_event(logger, logging.ERROR, "execguard.answer_failed", pid=pid, error=str(exc))
            finally:
                os.close(fd)

    def _decide(self, fd: int, pid: int) -> tuple[str, _Keep | None]:
        """Return the entry that bans the file behind `fd` ("" to allow it) and, for an allow the
        kernel may keep, what marking it needs. The guard's own execs, fail-mode answers and
        denials are never kept. A cache hit is answered here, in the reading thread: one fstat
        and one lookup for an allow that needs no path, else also the path (a readlink)."""
        if pid in self._own:
            self.stats["self"] += 1
            return "", None
        generation, cache, deny, banned, path_free = self._state
        st = os.fstat(fd)
        if cache.allowed_anywhere(st):
            self.stats["cached"] += 1
            return "", ((generation, st) if not st.st_uid and self._may_keep(fd, st, "") else None)
        path = _fd_path(fd)
        verdict = cache.get(st, path)
        if verdict is not None:
            self.stats["cached"] += 1
            may_keep = not verdict[0] and verdict[1] and self._may_keep(fd, st, path)
        else:
            may_keep = self._may_keep(fd, st, path)
            verdict = self._judge(fd, st, path, may_keep, (cache, deny, banned, path_free))
            if verdict is None:
                return ("(deadline)" if self.fail_closed else ""), None
        entry, by_any_name = verdict
        return entry, ((generation, st) if may_keep and not entry and by_any_name else None)

    def _judge(self, fd: int, st: os.stat_result, path: str, vouch: bool,
               state: tuple[VerdictCache[Verdict], DenySet, _Banned, bool]) -> Verdict | None:
        """Judge the file (hashing it if the list has hashes) and cache the verdict; return None
        when the hash passed the deadline (it is finished in the background for next time)."""
        cache, deny, banned, path_free = state
        entry = banned.get(file_key(st), "")
        if entry and not deny.exempt(path):
            verdict = (entry, False)  # a banned package's file, reached by another path
        else:
            deadline = time.monotonic() + self.deadline
            try:
                verdict = deny.judge(path, lambda: sha256_fd(fd, deadline, time.monotonic), vouch=vouch)
            except TimeoutError:
                self.stats["deadline"] += 1
                self._finish_later(fd, (st, path, cache, deny, path_free))
                return None
        cache.put(st, path, verdict, anywhere=path_free and _clean_anywhere(verdict, path, deny))
        return verdict

    def _may_keep(self, fd: int, st: os.stat_result, path: str) -> bool:
        """Whether only root can change this file or rename it (`ignoremarks.kernel_may_keep`);
        the path ("" if not read yet) is read only when the file's stat passes."""
        marks = self._marks
        assert marks is not None
        return kernel_may_keep(st, lambda: marks.fs_magic(fd), lambda: _folder(path or _fd_path(fd)))

    def _keep(self, fd: int, keep: _Keep) -> None:
        """Leave an allow in the kernel (after answering, so the exec does not wait for it)."""
        assert self._marks is not None
        generation, st = keep
        if self._marks.add(fd, generation, lambda: content_key(os.fstat(fd)) == content_key(st)):
            self.stats["marked"] += 1

    def _finish_later(self, fd: int, work: _LateWork) -> None:
        try:
            self._late.put_nowait((os.dup(fd), work))
        except queue.Full:
            pass

    def _background(self) -> None:
        """Finish verdicts that missed the deadline, so the next exec of the file is judged."""
        while True:
            fd, work = self._late.get()
            if work is None:
                return
            st, path, cache, deny, path_free = work
            try:
                verdict = deny.judge(path, lambda: sha256_fd(fd), vouch=False)
                cache.put(st, path, verdict, anywhere=path_free and _clean_anywhere(verdict, path, deny))
            except OSError as exc:
                log_event(logger, logging.WARNING, "execguard.hash_failed", path=path, error=str(exc))
            finally:
                os.close(fd)

    def _report(self) -> None:
        """Log denials and hand them to `on_deny` off the answering thread, so a slow
        notification never delays an exec."""
        while True:
            denial = self._denials.get()
            if denial is None:
                return
            log_event(logger, logging.WARNING, "execguard.denied", path=denial.path, pid=denial.pid, rule=denial.entry)
            if self.on_deny is not None:
                try:
                    self.on_deny(denial)
                except Exception as exc:  # noqa: BLE001 - reporting must not stop the guard
                    log_event(logger, logging.ERROR, "execguard.report_failed", error=str(exc))


def banned_files(deny: DenySet) -> _Banned:
    """Return {file key: entry} for the banned packages' files that exist now, so a package's
    file is denied by its inode too, by whatever path it is reached (a bind mount, a hard link)
    — the verdict cache and the ignore marks are per inode."""
    found = {}
    for path, entry in deny.paths.items():
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found[file_key(st)] = entry
    return found


def _path_free(deny: DenySet) -> bool:
    """Whether allows under this deny set may be cached without their path (`deny.renamed_into`)."""
    folder = renamed_into(deny.paths)
    if folder:
        log_event(logger, logging.INFO, "execguard.allows_cached_by_path", folder=folder)
    return not folder


def _clean_anywhere(verdict: Verdict, path: str, deny: DenySet) -> bool:
    """Whether an allow holds whatever the file's folders are called: its bytes passed (or the
    list has no hashes) and no exemption of its path was needed — a `protected` folder renamed
    away leaves the same name outside it, where a name rule applies."""
    return verdict == ("", True) and not deny.exempt(path)


def _folder(path: str) -> os.stat_result | None:
    try:
        return os.stat(os.path.dirname(path))
    except OSError:
        return None


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)")
