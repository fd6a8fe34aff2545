"""Quarantine: unpackaged installs the scan found (AppImages, macOS .app bundles) are moved into
a root-only folder with a manifest, never deleted, so a mistaken ban is undone with
`appban quarantine restore ID`. What may be moved at all is decided by agent/enforce/evidence.py
(the planner, and again just before the move); this module only moves and restores.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import stat
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from agent.errors import UserError
from agent.atomic import write_atomic
from agent.enforce.files import on_root

MANIFEST = "manifest.json"
STORED_NAME_MAX = 200
"""Stored names are `<index>-<original name>`, cut so they stay under NAME_MAX (255)."""


class QuarantineError(UserError):
    """A quarantine that cannot be done or undone; the message is one line."""


@dataclass(frozen=True)
class Record:
    """One quarantined install: where its files came from and where they are kept."""

    id: str
    entry: str
    app: str
    time: str
    items: tuple[dict, ...]
    """Each: original (path on the device), stored (name inside the record), mode, uid, gid."""


def quarantine(root: str, store: Path, paths: list[str], entry: str, app: str,
               expect: tuple[int, int] | None = None) -> Record:
    """Given device paths (under `root`), move them into a new record in `store` and return it.
    With `expect` (device, inode), a single path must still be that very file (the one whose
    owner and place were checked), or nothing is moved.

    Every folder on the way is opened without following symlinks, so a folder swapped for a link
    after the check makes the move fail instead of taking a file from elsewhere.

    Raise QuarantineError if nothing exists to move, a folder on the way is a symlink, or the
    file is no longer the one expected.
    """
    present = [p for p in paths if os.path.lexists(on_root(root, p))]
    if not present:
        raise QuarantineError(f"nothing to quarantine: {', '.join(paths)} not found")
    store.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(store, 0o700)
    record_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    folder = store / record_id
    folder.mkdir(mode=0o700)
    record = Record(record_id, entry, app, datetime.now(timezone.utc).isoformat(), ())
    for index, original in enumerate(present):
        stored = f"{index}-{os.path.basename(original)}"[:STORED_NAME_MAX]
        try:
            st = _move_out(root, original, folder / stored, expect)
        except (OSError, QuarantineError):
            if not record.items:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        # The manifest is rewritten after every move, so what was moved before a later move
        # fails (or the agent dies) is still listed and restorable.
        record = replace(record, items=(*record.items, {"original": original, "stored": stored,
                                                        "mode": st.st_mode & 0o7777, "uid": st.st_uid,
                                                        "gid": st.st_gid}))
        write_atomic(folder / MANIFEST, (json.dumps(_to_dict(record), indent=2) + "\n").encode(), 0o600,
                     parents=True)
    return record


def _parent(root: str, path: str) -> tuple[int, str]:
    """Open the folder holding device path `path` under `root`, following no symlink on the
    way; return (an O_PATH fd of the folder, the last name). Raise QuarantineError if a folder
    is missing or a symlink, or the path has `..` in it."""
    parts = PurePosixPath("/" + path.lstrip("/")).parts[1:]
    if not parts or ".." in parts:
        raise QuarantineError(f"{path}: not a plain absolute path")
    fd = os.open(os.path.realpath(root), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            deeper = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = deeper
    except OSError as exc:
        os.close(fd)
        raise QuarantineError(f"{path}: folder {part!r} on the way is missing or a symlink ({exc.strerror})") from None
    return fd, parts[-1]


def _move_out(root: str, original: str, destination: Path, expect: tuple[int, int] | None) -> os.stat_result:
    """Move one device path into the store through its no-follow folder fd; return its lstat."""
    parent, name = _parent(root, original)
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if expect is not None and (st.st_dev, st.st_ino) != expect:
            raise QuarantineError(f"{original} is no longer the file that was checked; not moved")
        try:
            os.rename(name, destination, src_dir_fd=parent)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy_then_remove(parent, name, st, destination)
        return st
    finally:
        os.close(parent)


def _copy_then_remove(parent: int, name: str, st: os.stat_result, destination: Path) -> None:
    """Across filesystems: copy what `name` (in folder fd `parent`) is into `destination`,
    then remove the original; a failure removes the copy and leaves the original."""
    through_fd = f"/proc/self/fd/{parent}/{name}"
    try:
        if stat.S_ISDIR(st.st_mode):
            shutil.copytree(through_fd, destination, symlinks=True)
            shutil.rmtree(through_fd)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=parent), destination)
            os.unlink(name, dir_fd=parent)
        else:
            source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
            with open(source, "rb") as reader, open(destination, "xb") as writer:
                if (os.fstat(reader.fileno()).st_ino, stat.S_ISREG(os.fstat(reader.fileno()).st_mode)) != (st.st_ino, True):
                    raise QuarantineError(f"{name}: changed while it was being moved; not moved")
                shutil.copyfileobj(reader, writer)
            os.unlink(name, dir_fd=parent)
    except BaseException:
        if os.path.isdir(destination) and not os.path.islink(destination):
            shutil.rmtree(destination, ignore_errors=True)
        elif os.path.lexists(destination):
            os.unlink(destination)
        raise


def records(store: Path) -> list[Record]:
    """Return every quarantine record in `store`, oldest first."""
    if not store.is_dir():
        return []
    found = []
    for folder in sorted(store.iterdir()):
        manifest = folder / MANIFEST
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
                found.append(Record(data["id"], data["entry"], data["app"], data["time"], tuple(data["items"])))
            except (ValueError, KeyError, TypeError) as exc:
                raise QuarantineError(f"quarantine record {manifest}: unreadable manifest ({exc})") from None
    return found


def restore(root: str, store: Path, record_id: str) -> Record:
    """Move a record's files back where they were (owner and mode as before) and drop the record.

    Raise QuarantineError if the id is unknown or something now occupies an original path.
    """
    record = next((r for r in records(store) if r.id == record_id), None)
    if record is None:
        raise QuarantineError(f"no quarantine record {record_id!r} (see `appban quarantine list`)")
    for item in record.items:
        if os.path.lexists(on_root(root, item["original"])):
            raise QuarantineError(f"cannot restore {record_id}: {item['original']} exists again")
    folder = store / record_id
    for item in record.items:
        _move_back(root, folder / item["stored"], item)
    shutil.rmtree(folder)
    return record


def _move_back(root: str, stored: Path, item: dict) -> None:
    """Put one stored file back through its original folder, opened without following symlinks
    (a folder a user swapped for a link to /etc while the file was away is refused), with the
    owner and mode it had."""
    parent, name = _parent(root, item["original"])
    try:
        try:
            os.rename(stored, name, dst_dir_fd=parent)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.move(stored, f"/proc/self/fd/{parent}/{name}")
        os.chown(name, item["uid"], item["gid"], dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            os.chmod(name, item["mode"], dir_fd=parent)
    finally:
        os.close(parent)


def _to_dict(record: Record) -> dict:
    return {"id": record.id, "entry": record.entry, "app": record.app, "time": record.time,
            "items": list(record.items)}
