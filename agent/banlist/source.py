"""Decide which ban list is in force: a file named on the command line or in config, a URL, or
the example list bundled with appban (so a fresh machine can be checked with no server)."""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from pathlib import Path

from agent.banlist.parse import BanListError, parse_banlist
from agent.config import Config
from agent.model import BanList, BanListInfo, aware

BUNDLED = "banlist.example.yaml"


def bundled_bytes() -> bytes:
    """Return the bytes of the ban list shipped with appban."""
    return resources.files("agent.bundled").joinpath(BUNDLED).read_bytes()


def staleness(banlist: BanList, now: datetime) -> tuple[bool, datetime | None]:
    """Return (stale, since): a list past its `expires` is still used, but flagged everywhere."""
    if banlist.expires is not None and aware(now) > aware(banlist.expires):
        return True, banlist.expires
    return False, None


def load_file(path: str, now: datetime) -> tuple[BanList, BanListInfo]:
    """Given a local ban-list file, return it and its info. Raise BanListError if unusable.

    A file the local administrator names is trusted as local config is; it is reported as
    unsigned so nobody mistakes it for a verified central list.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BanListError(f"ban list {path}: cannot read: {exc.strerror or exc}") from None
    banlist = parse_banlist(data, f"ban list {path}")
    stale, since = staleness(banlist, now)
    return banlist, BanListInfo(banlist.serial, path, signed=False, stale=stale, stale_since=since)


def load_active(config: Config, override: str | None, now: datetime) -> tuple[BanList, BanListInfo]:
    """Return the ban list in force and its info: `override` (path or URL), else config, else bundled.

    Raise BanListError (one line) when the chosen list cannot be used.
    """
    choice = override or config.banlist.url or config.banlist.path
    if not choice:
        banlist = parse_banlist(bundled_bytes(), "bundled ban list")
        stale, since = staleness(banlist, now)
        return banlist, BanListInfo(banlist.serial, "bundled example", signed=False, stale=stale, stale_since=since)
    if choice.startswith(("http://", "https://")):
        raise BanListError(f"ban list {choice}: fetching from a URL is not supported yet")
    return load_file(choice, now)
