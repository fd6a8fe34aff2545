"""The central ban list: fetch it, authenticate it, keep the last good one, refuse to go back.

`refresh` is the only way in: it downloads, authenticates (minisign signature by a trusted key),
parses, refuses rollbacks, and only then replaces the cache; `load_cached` reads the cache. A
refresh never raises for network or list problems: it returns a one-line error naming the URL,
what went wrong and which list stays in force, so the service can log it and keep going.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from agent.banlist import cache
from agent.banlist.cache import CacheError, CacheMeta, SuccessionError
from agent.banlist.fetch import MAX_SIGNATURE_BYTES, FetchError, Validators, get, make_session, signature_url
from agent.banlist.parse import BanListError, parse_banlist
from agent.banlist.signature import SignatureError, Verified, parse_public_key, verify
from agent.config import BanlistConfig, Config
from agent.log import log_event
from agent.model import BanList, BanListInfo, staleness

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)

_REFRESH_PROBLEMS = (FetchError, BanListError, SignatureError, SuccessionError, CacheError, OSError)
_PARSED: dict[str, BanList] = {}
"""The last list parsed from the network or the cache, by SHA-256 of its bytes (one slot)."""


@dataclass(frozen=True)
class RefreshResult:
    """What one refresh did. `info` describes the list in force afterwards (None: there is none).

    `error` is the one-line reason when the refresh failed (the previous list, if any, stays in
    force); `added`, `removed` and `updated` are the entry ids that changed when a new list came in.
    """

    changed: bool
    info: BanListInfo | None
    error: str | None = None
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    previous_serial: int | None = None
    not_modified: bool = False
    banlist: BanList | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class _Held:
    """The cached list, re-authenticated against today's trusted keys and parsed."""

    banlist: BanList
    info: BanListInfo
    meta: CacheMeta


def refresh(
    config: Config, state_dir: Path, now: datetime, sleep: Callable[[float], None] = time.sleep,
    log_failure: bool = True,
) -> RefreshResult:
    """Given a config with `banlist.url`, fetch the list and update the cache; return what happened.

    Never raises for network, server, list or cache problems: they come back as `error`, one line
    naming the URL, what went wrong and which list stays in force, also logged unless
    `log_failure` is false (a command that prints the line itself says it once, not twice).
    """
    settings = config.banlist
    folder = Path(state_dir)
    with cache.exclusive(folder):
        held, problem = _held(settings, folder, now)
        if problem:
            log_event(logger, logging.WARNING, "banlist.cache_unusable", error=problem)
        try:
            floor = cache.read_meta(folder)
        except CacheError:
            floor = None  # already reported by _held; any properly signed list may replace it
        try:
            return _refresh(settings, folder, now, held, floor, sleep)
        except _REFRESH_PROBLEMS as exc:
            return _failed(settings.url, exc, held, log_failure)


def _refresh(
    settings: BanlistConfig, folder: Path, now: datetime, held: _Held | None, floor: CacheMeta | None,
    sleep: Callable[[float], None],
) -> RefreshResult:
    """Download, authenticate, parse and check succession, then store; raise any _REFRESH_PROBLEMS.

    The order matters: nothing from the network is parsed before its signature is checked, and
    nothing is written before every check has passed.
    """
    if not settings.url:
        raise BanListError("no banlist.url configured")
    if not settings.trusted_keys and not settings.allow_unsigned:
        raise BanListError("no banlist.trusted_keys configured (or allow_unsigned: true, for labs only)")
    validators = Validators(held.meta.etag, held.meta.last_modified) if held else None
    with make_session(settings) as session:
        download = get(session, settings.url, settings, validators, sleep=sleep)
        if download.not_modified and held is not None:
            meta = dataclasses.replace(held.meta, checked=now, etag=download.validators.etag,
                                       last_modified=download.validators.last_modified)
            cache.write_meta(folder, meta)
            log_event(logger, logging.INFO, "banlist.not_modified", url=settings.url, serial=held.info.serial)
            _warn_if_stale(settings.url, held.info)
            return RefreshResult(False, held.info, not_modified=True, banlist=held.banlist)
        assert download.body is not None
        signature = _get_signature(session, settings, sleep)
    verified = _authenticate(settings, download.body, signature)
    banlist = _parse_remembered(download.body, f"ban list {settings.url}")
    digest = cache.sha256(download.body)
    cache.check_succession(floor, banlist.serial, digest)
    meta = cache.new_meta(
        settings.url, banlist.serial, download.body, signed=verified is not None,
        signer=verified.key_id_hex if verified else "", trusted_comment=verified.trusted_comment if verified else "",
        etag=download.validators.etag, last_modified=download.validators.last_modified, fetched=now, checked=now,
    )
    if floor is not None and floor.sha256 == digest:
        meta = dataclasses.replace(meta, fetched=floor.fetched)  # the same list, only served again
    cache.store(folder, meta, download.body, signature if verified else None)
    info = _info(banlist, meta, now)
    _warn_if_stale(settings.url, info)
    return _changes(held, banlist, info)


def _get_signature(session: requests.Session, settings: BanlistConfig, sleep: Callable[[float], None]) -> bytes | None:
    """Fetch the signature; with `allow_unsigned` a missing one (404) or no trusted key means none."""
    if settings.allow_unsigned and not settings.trusted_keys:
        return None
    url = signature_url(settings)
    try:
        return get(session, url, settings, max_bytes=MAX_SIGNATURE_BYTES, sleep=sleep).body
    except FetchError as exc:
        if settings.allow_unsigned and exc.status == 404:
            return None
        raise FetchError(f"signature {url}: {exc}", exc.status) from None


def _authenticate(settings: BanlistConfig, data: bytes, signature: bytes | None) -> Verified | None:
    """Return who signed `data`, or None for an unsigned list that config allows.

    Raise SignatureError when the signature is bad or by a key not in `trusted_keys`.
    """
    if signature is None:
        if not settings.allow_unsigned:
            raise SignatureError("no signature, and unsigned lists are not allowed")
        return None
    return verify(data, signature, [parse_public_key(k) for k in settings.trusted_keys])


def _held(settings: BanlistConfig, folder: Path, now: datetime) -> tuple[_Held | None, str | None]:
    """Return the cached list if it is still usable under today's config, else (None, why not).

    The signature is checked again on every load: a key the administrator has since removed from
    `trusted_keys` no longer vouches for anything, cached or not.
    """
    try:
        meta = cache.read_meta(folder)
        if meta is None:
            return None, None
        stored = cache.read(folder, meta)
        verified = _authenticate(settings, stored.data, stored.signature)
        banlist = _parse_remembered(stored.data, f"cached ban list {cache.cache_dir(folder) / meta.list_file}")
    except (CacheError, SignatureError, BanListError) as exc:
        return None, f"cached list unusable: {exc}"
    if banlist.serial != meta.serial:
        return None, f"cached list unusable: serial {banlist.serial} does not match its metadata ({meta.serial})"
    if verified is not None:
        meta = dataclasses.replace(meta, signer=verified.key_id_hex)
    return _Held(banlist, _info(banlist, meta, now), meta), None


def _parse_remembered(data: bytes, what: str) -> BanList:
    """Parse a list, or return it as parsed before: every refresh and load re-reads the cache, and
    a 10,000-entry list takes seconds to parse but milliseconds to hash. Raise BanListError."""
    digest = cache.sha256(data)
    banlist = _PARSED.get(digest)
    if banlist is None:
        banlist = parse_banlist(data, what)
        _PARSED.clear()
        _PARSED[digest] = banlist
    return banlist


def _info(banlist: BanList, meta: CacheMeta, now: datetime) -> BanListInfo:
    stale, since = staleness(banlist, now)
    return BanListInfo(banlist.serial, meta.url, signed=bool(meta.signature_file), stale=stale,
                       stale_since=since, signer=meta.signer)


def _warn_if_stale(url: str, info: BanListInfo) -> None:
    if info.stale and info.stale_since is not None:
        log_event(logger, logging.WARNING, "banlist.stale", url=url, serial=info.serial,
                  expired=info.stale_since.isoformat())


def _failed(url: str, exc: BaseException, held: _Held | None, log_failure: bool) -> RefreshResult:
    """Return the failed refresh, with one line: URL, what went wrong, which list stays in force."""
    problem = " ".join(str(exc).split())
    prefix = f"ban list {url}"
    if not problem.startswith(prefix):
        problem = f"{prefix}: {problem}"
    if held is None:
        kept = "no ban list in force"
    else:
        kept = f"keeping serial {held.info.serial} fetched {held.meta.fetched.isoformat(timespec='seconds')}"
    log_event(logger, logging.WARNING if log_failure else logging.DEBUG, "banlist.refresh_failed", url=url,
              error=problem, kept_serial=held.info.serial if held else None)
    return RefreshResult(False, held.info if held else None, error=f"{problem}; {kept}",
                         banlist=held.banlist if held else None)


def _changes(held: _Held | None, banlist: BanList, info: BanListInfo) -> RefreshResult:
    """Compare the new list with the one it replaces, entry by entry (exceptions count with their entry)."""
    old = _entries(held.banlist) if held else {}
    new = _entries(banlist)
    added = tuple(sorted(new.keys() - old.keys()))
    removed = tuple(sorted(old.keys() - new.keys()))
    updated = tuple(sorted(k for k in new.keys() & old.keys() if new[k] != old[k]))
    previous = held.info.serial if held else None
    changed = previous != banlist.serial
    if changed:
        log_event(logger, logging.INFO, "banlist.updated", url=info.source, serial=banlist.serial,
                  previous=previous, added=len(added), removed=len(removed), updated=len(updated))
    return RefreshResult(changed, info, added=added, removed=removed, updated=updated,
                         previous_serial=previous, banlist=banlist)


def _entries(banlist: BanList) -> dict[str, tuple[object, ...]]:
    return {e.id: (e, tuple(x for x in banlist.exceptions if x.entry == e.id)) for e in banlist.entries}


def load_cached(settings: BanlistConfig, choice: str, folder: Path, now: datetime) -> tuple[BanList, BanListInfo]:
    """Return the cached list for `choice` (a URL), re-authenticated against today's trusted keys.

    Raise BanListError (one line) when there is no usable verified copy.
    """
    held, problem = _held(settings, folder, now)
    if held is None:
        reason = problem or f"no verified copy in {cache.cache_dir(folder)} yet (`appban policy fetch` gets one)"
        raise BanListError(f"ban list {choice}: {reason}")
    return held.banlist, held.info
