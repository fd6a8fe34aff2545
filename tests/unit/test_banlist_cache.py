"""The last-known-good cache (atomic writes, succession rules), retry backoff and the ban-list
config checks: no network, a temporary state directory."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.banlist import cache
from agent.banlist.keys import check_trusted_keys
from agent.banlist.cache import CacheError, SuccessionError
from agent.banlist.fetch import MAX_BACKOFF, Validators, backoff_delay
from agent.banlist.signature import generate_keypair
from agent.banlist.central import RefreshResult
from agent.commands.policy import describe_refresh
from agent.config import ConfigError, interval_seconds, parse_config
from agent.model import BanListInfo

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def meta_for(serial: int, data: bytes, signed: bool = True) -> cache.CacheMeta:
    return cache.new_meta("https://lists.example/banlist.yaml", serial, data, signed=signed, signer="ABCD",
                          trusted_comment="c", etag='"e"', last_modified="", fetched=NOW, checked=NOW)


def files(state: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(cache.cache_dir(state).iterdir())}


def test_store_then_read_round_trips_and_drops_the_previous_list(tmp_path: Path) -> None:
    cache.store(tmp_path, meta_for(1, b"one"), b"one", b"sig one")
    cache.store(tmp_path, meta_for(2, b"two"), b"two", b"sig two")
    meta = cache.read_meta(tmp_path)
    assert meta == meta_for(2, b"two")
    held = cache.read(tmp_path, meta)
    assert (held.data, held.signature) == (b"two", b"sig two")
    assert sorted(files(tmp_path)) == ["banlist.json", "list-2", "list-2.minisig"]


def test_unsigned_list_is_stored_without_signature_file(tmp_path: Path) -> None:
    cache.store(tmp_path, meta_for(1, b"one", signed=False), b"one", None)
    meta = cache.read_meta(tmp_path)
    assert meta.signature_file == "" and cache.read(tmp_path, meta).signature is None


def test_crash_before_the_metadata_is_replaced_leaves_the_old_cache(tmp_path: Path, monkeypatch) -> None:
    cache.store(tmp_path, meta_for(1, b"one"), b"one", b"sig one")
    before = files(tmp_path)
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(dst).name == cache.META_FILE:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(CacheError, match="cannot write: No space left on device"):
        cache.store(tmp_path, meta_for(2, b"two"), b"two", b"sig two")
    monkeypatch.undo()

    meta = cache.read_meta(tmp_path)
    assert meta.serial == 1 and cache.read(tmp_path, meta).data == b"one"
    left = files(tmp_path)
    assert {k: v for k, v in left.items() if k in before} == before
    assert not [name for name in left if name.endswith(".tmp")]


def test_read_refuses_bytes_that_do_not_match_the_recorded_hash(tmp_path: Path) -> None:
    cache.store(tmp_path, meta_for(1, b"one"), b"one", b"sig")
    (cache.cache_dir(tmp_path) / "list-1").write_bytes(b"ONE")
    with pytest.raises(CacheError, match="does not match its recorded hash"):
        cache.read(tmp_path, cache.read_meta(tmp_path))


def test_missing_cache_is_none_and_garbage_metadata_an_error(tmp_path: Path) -> None:
    assert cache.read_meta(tmp_path) is None
    cache.cache_dir(tmp_path).mkdir()
    (cache.cache_dir(tmp_path) / cache.META_FILE).write_text('{"format": "appban.banlist-cache/v1"}')
    with pytest.raises(CacheError, match="required key is missing"):
        cache.read_meta(tmp_path)


@pytest.mark.parametrize(
    ("serial", "data", "problem"),
    [
        (4, b"old", "rollback from serial 5 to 4 refused"),
        (5, b"other", "serial 5 republished with different content refused"),
    ],
)
def test_succession_refuses_going_backwards_or_rewriting(serial: int, data: bytes, problem: str) -> None:
    held = meta_for(5, b"five")
    with pytest.raises(SuccessionError, match=problem):
        cache.check_succession(held, serial, cache.sha256(data))


def test_succession_accepts_newer_the_same_or_a_first_list() -> None:
    held = meta_for(5, b"five")
    cache.check_succession(held, 6, cache.sha256(b"six"))
    cache.check_succession(held, 5, cache.sha256(b"five"))
    cache.check_succession(None, 1, cache.sha256(b"one"))


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    assert backoff_delay(1.0, 0, rng=lambda: 0.0) == 0.5
    assert backoff_delay(1.0, 0, rng=lambda: 1.0) == 1.0
    assert backoff_delay(1.0, 3, rng=lambda: 1.0) == 8.0
    assert backoff_delay(1.0, 30, rng=lambda: 1.0) == MAX_BACKOFF


def test_validators_become_conditional_headers() -> None:
    assert Validators('"abc"', "Sun, 22 Nov 2026 10:00:00 GMT").headers() == {
        "If-None-Match": '"abc"', "If-Modified-Since": "Sun, 22 Nov 2026 10:00:00 GMT"}
    assert Validators().headers() == {}


def test_config_refuses_plain_http_and_malformed_keys() -> None:
    with pytest.raises(ConfigError, match=r"banlist.url': must be an https:// URL"):
        parse_config(b"banlist: {url: 'http://lists.example/banlist.yaml'}", "config t")
    with pytest.raises(ConfigError, match=r"banlist.trusted_keys': key #2: malformed public key"):
        good = generate_keypair()[1].to_base64()
        check_trusted_keys(parse_config(f"banlist: {{trusted_keys: [{good}, nonsense]}}".encode(), "config t"),
                           "config t")
    config = parse_config(b"banlist: {url: 'https://l.example/b.yaml', retries: 0, backoff: 0.5}", "config t")
    assert (config.banlist.retries, config.banlist.backoff) == (0, 0.5)


@pytest.mark.parametrize(("text", "problem"), [
    ("banlist: {timeout: 0}", "banlist.timeout': must be above zero"),
    ("banlist: {max_bytes: 0}", "banlist.max_bytes': must be above zero"),
    ("banlist: {retries: -1}", "banlist.retries': must not be negative"),
    ("banlist: {backoff: -1}", "banlist.backoff': must not be negative"),
    ("push: {timeout: -2}", "push.timeout': must be above zero"),
])
def test_config_refuses_numbers_the_http_client_would_crash_on(text: str, problem: str) -> None:
    """requests raises ValueError for a timeout <= 0, time.sleep for a negative backoff: neither
    may surface as a traceback at the first refresh, so the config refuses them when read."""
    with pytest.raises(ConfigError, match=problem):
        parse_config(text.encode(), "config t")


def test_describe_refresh_names_the_changed_entries() -> None:
    info = BanListInfo(8, "https://l.example/b.yaml", signed=True, signer="ABCD")
    text = describe_refresh("https://l.example/b.yaml", RefreshResult(
        True, info, added=("deepseek",), removed=(), updated=("tiktok", "wechat"), previous_serial=7))
    assert text.splitlines() == [
        "ban list https://l.example/b.yaml: serial 7 -> serial 8 (signed by key ABCD)",
        "  1 added: deepseek", "  0 removed", "  2 changed: tiktok, wechat",
    ]
    stale = BanListInfo(8, "u", signed=False, stale=True, stale_since=NOW)
    text = describe_refresh("u", RefreshResult(False, stale, not_modified=True))
    assert text.splitlines() == [
        "ban list u: not modified (HTTP 304); serial 8 (UNSIGNED) stays in force",
        f"WARNING: serial 8 is stale (expired {NOW.isoformat()})",
    ]


@pytest.mark.parametrize("text", ["schedule: {scan: 99999999999999999999d}", "banlist: {refresh: 400d}",
                                  "enforcement: {kill_interval: 9999999h}"])
def test_config_refuses_an_interval_over_a_year(text: str) -> None:
    """The scheduler turns an interval into a timedelta; an absurd one crashed `appban run`
    with an OverflowError traceback instead of a config error naming the key."""
    with pytest.raises(ConfigError, match=r"bad interval .* \(at most 365d\)"):
        parse_config(text.encode(), "config t")
    assert interval_seconds("365d") == 365 * 86400


def test_config_refuses_an_empty_state_dir() -> None:
    from agent.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="key 'state_dir': must not be empty"):
        parse_config(b"state_dir: ''\n", "config x")


def test_a_refresh_waits_for_another_one_holding_the_cache(tmp_path) -> None:
    """Two refreshes (service and a one-off check) must not interleave: the second waits."""
    import fcntl
    import threading
    from datetime import datetime, timezone

    from agent.banlist import cache as cache_module
    from agent.banlist.central import refresh
    from agent.config import BanlistConfig, Config

    config = Config(banlist=BanlistConfig(url="https://127.0.0.1:9/list.yaml", allow_unsigned=True,
                                          retries=0, timeout=2.0))
    results = []
    with open(tmp_path / cache_module.LOCK_FILE, "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: results.append(refresh(config, tmp_path, datetime.now(timezone.utc))))
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive() and not results, "the refresh went ahead while the cache was held"
    worker.join(timeout=30)
    assert results and results[0].error and "127.0.0.1:9" in results[0].error
