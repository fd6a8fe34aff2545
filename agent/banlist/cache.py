"""The last-known-good ban list, kept in the state directory.

A device must keep enforcing when the list server is down, and must never go backwards: the cache
holds the exact bytes of the last accepted list, its signature and what the server said about it
(ETag, Last-Modified, when it was fetched and last confirmed), and it remembers the serial that any
new list has to beat.

Layout (`<state_dir>/banlist/`): `list-<serial>` (the bytes as fetched), `list-<serial>.minisig`,
and `banlist.json`, the metadata that names them. Every file is written atomically (temporary
file, fsync, rename, fsync of the directory) and the metadata is written last, so it is the commit
point: a crash at any moment leaves either the old cache or the new one, never a mixture, and a
refused download never touches any of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from agent import platform as host
from agent.atomic import write_atomic
from agent.documents import DocumentError, load_document
from agent.schema import SchemaError, build

CACHE_DIR = "banlist"
META_FILE = "banlist.json"
FORMAT = "appban.banlist-cache/v1"


class CacheError(RuntimeError):
    """The cache cannot be read or written; the message is one line naming the file."""


class SuccessionError(ValueError):
    """A list that would replace the accepted one with an older or a rewritten one."""


@dataclass(frozen=True)
class CacheMeta:
    """What is known about the cached list; `banlist.json` is this record as JSON."""

    format: str
    url: str
    serial: int
    sha256: str
    list_file: str
    signature_file: str
    """Empty for a list accepted unsigned (`allow_unsigned: true`)."""
    signer: str
    trusted_comment: str
    etag: str
    last_modified: str
    fetched: datetime
    """When these bytes were accepted."""
    checked: datetime
    """When the server last confirmed them (a 200 or a 304)."""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["fetched"] = self.fetched.isoformat()
        data["checked"] = self.checked.isoformat()
        return data


@dataclass(frozen=True)
class Cached:
    """The cached list's bytes and signature, checked against the metadata's hash."""

    meta: CacheMeta
    data: bytes
    signature: bytes | None


LOCK_FILE = "banlist.lock"
"""Beside the cache folder, not in it, so the cache holds exactly the list, signature and metadata."""


def cache_dir(state_dir: Path) -> Path:
    """Return the directory under the state dir that holds the ban-list cache."""
    return Path(state_dir) / CACHE_DIR


@contextlib.contextmanager
def exclusive(state_dir: Path) -> Iterator[None]:
    """Hold the cache's lock for one refresh: reading the serial floor, fetching and storing.

    Why: the service and a one-off `appban check` may refresh at the same moment; without the
    lock the one holding an older list could commit it last — a rollback through a race. Where
    the lock file cannot be created (a read-only state directory) the refresh runs unlocked,
    since it cannot store anything there either, and says so when it tries.
    """
    try:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        handle = open(Path(state_dir) / LOCK_FILE, "a+b")  # noqa: SIM115 - closed below
    except OSError:
        yield
        return
    with handle:
        host.wait_lock(handle)
        yield


def sha256(data: bytes) -> str:
    """Return the hex SHA-256 of some bytes (how the cache names what it holds)."""
    return hashlib.sha256(data).hexdigest()


def read_meta(state_dir: Path) -> CacheMeta | None:
    """Return the cache metadata, or None when nothing has been cached yet.

    Raise CacheError if the metadata file exists but cannot be read or is malformed.
    """
    path = cache_dir(state_dir) / META_FILE
    try:
        raw = load_document(path.read_bytes(), f"ban-list cache {path}")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheError(f"ban-list cache {path}: cannot read: {exc.strerror or exc}") from None
    except DocumentError as exc:
        raise CacheError(str(exc)) from None
    try:
        meta = build(CacheMeta, raw)
    except SchemaError as exc:
        raise CacheError(f"ban-list cache {path}: {exc}") from None
    if meta.format != FORMAT:
        raise CacheError(f"ban-list cache {path}: unknown format {meta.format!r}")
    return meta


def read(state_dir: Path, meta: CacheMeta) -> Cached:
    """Given the metadata, return the cached bytes and signature it names.

    Raise CacheError if a file is missing or the bytes do not hash to what was accepted.
    """
    folder = cache_dir(state_dir)
    try:
        data = (folder / meta.list_file).read_bytes()
        signature = (folder / meta.signature_file).read_bytes() if meta.signature_file else None
    except OSError as exc:
        raise CacheError(f"ban-list cache {folder}: cannot read: {exc.strerror or exc}") from None
    if sha256(data) != meta.sha256:
        raise CacheError(f"ban-list cache {folder / meta.list_file}: content does not match its recorded hash")
    return Cached(meta, data, signature)


def check_succession(held: CacheMeta | None, serial: int, digest: str) -> None:
    """Refuse a list that does not move forward from the accepted one.

    Raise SuccessionError for a lower serial (a replayed old list could un-ban an app) or for the
    same serial with other bytes (a list that changed without a new serial cannot be audited).
    """
    if held is None:
        return
    if serial < held.serial:
        raise SuccessionError(f"rollback from serial {held.serial} to {serial} refused")
    if serial == held.serial and digest != held.sha256:
        raise SuccessionError(
            f"serial {serial} republished with different content refused (a changed list needs a new serial)"
        )


def new_meta(url: str, serial: int, data: bytes, signed: bool, **fields: Any) -> CacheMeta:
    """Return the metadata for a list about to be stored (file names follow from the serial)."""
    name = f"list-{serial}"
    return CacheMeta(
        format=FORMAT, url=url, serial=serial, sha256=sha256(data), list_file=name,
        signature_file=f"{name}.minisig" if signed else "", **fields,
    )


def store(state_dir: Path, meta: CacheMeta, data: bytes, signature: bytes | None) -> None:
    """Write a newly accepted list, its signature and metadata, then drop the previous files.

    Raise CacheError if the state directory cannot be written (the previous cache stays intact).
    """
    folder = cache_dir(state_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / meta.list_file, data, 0o644)
        if signature is not None and meta.signature_file:
            write_atomic(folder / meta.signature_file, signature, 0o644)
        write_meta(state_dir, meta)
    except OSError as exc:
        raise CacheError(f"ban-list cache {folder}: cannot write: {exc.strerror or exc}") from None
    keep = {META_FILE, meta.list_file, meta.signature_file}
    for old in folder.glob("list-*"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def write_meta(state_dir: Path, meta: CacheMeta) -> None:
    """Atomically replace the cache metadata (the commit point of every cache change)."""
    text = json.dumps(meta.to_dict(), indent=2, ensure_ascii=False) + "\n"
    write_atomic(cache_dir(state_dir) / META_FILE, text.encode(), 0o644)
