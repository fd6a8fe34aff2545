"""Decide which ban list is in force: a file named on the command line or in config, the signed
list from the configured URL (through `agent.banlist.central`: fetch, signature, last-known-good
cache), or the example list bundled with appban (so a fresh machine can be checked with no server).

The central path (requests, the crypto library, the cache) is imported only when a URL is in
play: a check against a local or bundled list must start fast.
"""

from __future__ import annotations

import dataclasses
from agent.clock import datetime, timedelta
from pathlib import Path

from agent.banlist.parse import BanListError, check_issued, parse_banlist
from agent.config import Config
from agent.model import BanList, BanListInfo, staleness

BUNDLED = "banlist.example.json"
"""The bundled list as JSON, generated from `banlist.example.yaml` (the copy people edit) by
`scripts/banlist-json`: Python's JSON decoder reads it without importing PyYAML, which is most of
what loading a YAML list costs a check."""


def bundled_bytes() -> bytes:
    """Return the bytes of the ban list shipped with appban.

    Read beside the `agent.bundled` package rather than through importlib.resources, which costs
    a check more to import (~2 ms) than the read itself; pip installs packages as folders."""
    import agent.bundled

    return Path(agent.bundled.__file__).with_name(BUNDLED).read_bytes()


def bundled_banlist() -> BanList:
    """Return the ban list shipped with appban, as `bundled_bytes` parses to.

    It is taken from its Python twin, `agent.bundled.banlist_example` (written from the JSON by
    `scripts/banlist-json`; a test holds the two equal): importing that module's compiled form
    makes the records directly, without the JSON decoder or the schema's per-class plans, about
    a seventh of what parsing the JSON cost every check of the bundled list (issue 14)."""
    from agent.bundled.banlist_example import BANLIST

    return BANLIST


def is_url(choice: str) -> bool:
    """True when a --banlist value or config entry names a server rather than a file."""
    return choice.startswith(("http://", "https://"))


def load_file(path: str, now: datetime, max_age: timedelta) -> tuple[BanList, BanListInfo]:
    """Given a local ban-list file, return it and its info. Raise BanListError if unusable.

    A file the local administrator names is trusted as local config is; it is reported as
    unsigned so nobody mistakes it for a verified central list.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BanListError(f"ban list {path}: cannot read: {exc.strerror or exc}") from None
    banlist = parse_banlist(data, f"ban list {path}")
    check_issued(banlist, now, f"ban list {path}")
    return _unsigned(banlist, path, now, max_age)


def _unsigned(banlist: BanList, source: str, now: datetime, max_age: timedelta) -> tuple[BanList, BanListInfo]:
    """Return a local (file or bundled) list with its info: unsigned, stale past `expires` or `max_age`."""
    stale, since = staleness(banlist, now, max_age)
    return banlist, BanListInfo(banlist.serial, source, signed=False, stale=stale, stale_since=since)


def with_url(config: Config, url: str) -> Config:
    """Return the config with the ban list taken from `url` (the `--banlist URL` override).

    Raise BanListError unless the URL is https (the list only travels over verified TLS).
    """
    if not url.startswith("https://"):
        raise BanListError(f"ban list {url}: only https:// URLs are accepted")
    return dataclasses.replace(config, banlist=dataclasses.replace(config.banlist, url=url, signature_url=""))


def load_active(
    config: Config, override: str | None, now: datetime, state_dir: Path | None = None
) -> tuple[BanList, BanListInfo]:
    """Return the ban list in force and its info: `override` (path or URL), else config, else bundled.

    A URL is served from the verified cache in `state_dir` (default: config `state_dir`); call
    `refresh` first to update it. Raise BanListError (one line) when the chosen list cannot be used.
    """
    choice = override or config.banlist.url or config.banlist.path
    if not choice:
        return _unsigned(bundled_banlist(), "bundled example", now,
                         config.banlist.stale_after())
    if not is_url(choice):
        return load_file(choice, now, config.banlist.stale_after())
    if override:
        config = with_url(config, override)
    from agent.banlist import central  # the network, cache and crypto stack: only for a URL

    return central.load_cached(config.banlist, choice, Path(state_dir or config.state_dir), now)


def load_fresh(
    config: Config, override: str | None, now: datetime, state_dir: Path | None = None
) -> tuple[BanList, BanListInfo, str | None]:
    """Return the list in force after refreshing it when it comes from a URL, plus a warning line.

    The warning is set when the refresh failed but a cached list could be used (the caller shows
    it; it is not logged as well). Raise
    BanListError (one line) when there is no usable list at all.
    """
    if override and not is_url(override):
        return (*load_file(override, now, config.banlist.stale_after()), None)
    if override:
        config = with_url(config, override)
    if not config.banlist.url:
        return (*load_active(config, None, now), None)
    from agent.banlist import central  # the network, cache and crypto stack: only for a URL

    result = central.refresh(config, Path(state_dir or config.state_dir), now, log_failure=False)
    if result.info is None or result.banlist is None:
        raise BanListError(result.error or f"ban list {config.banlist.url}: no list in force")
    return result.banlist, result.info, result.error
