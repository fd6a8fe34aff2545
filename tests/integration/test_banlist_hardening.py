"""Ban-list refresh against hostile servers and lists (issue 11, items 9 and 11), over real HTTPS
on 127.0.0.1: a server that trickles bytes is cut off at the total deadline, the cache lock is
not held while downloading (a concurrent check never waits for the network), a commit compares
against the cache as it is at commit time, and a list issued in the future is refused.
"""

from __future__ import annotations

import fcntl
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.banlist import cache
from agent.banlist.central import RefreshResult, refresh
from agent.banlist.signature import PublicKey, SecretKey, generate_keypair, sign
from agent.config import BanlistConfig, Config
from tests.banlist_fixtures import direct, nginx, pki, scripted, site  # noqa: F401 - fixtures are used by name
from tests.banlist_servers import Pki, banlist_yaml
from tests.conftest import require_tool
from tests.service_support import wait_until

require_tool("nginx")

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
BOUND = 60.0
"""How long a refresh may take here before the test calls it hung (deadlines below are 2-3 s)."""


@pytest.fixture(scope="module")
def keys() -> tuple[SecretKey, PublicKey]:
    return generate_keypair()


@pytest.fixture(autouse=True)
def _direct(direct: None) -> None:
    """Talk to 127.0.0.1 without a proxy."""


def _config(state: Path, pki: Pki, url: str, public: PublicKey, **banlist: object) -> Config:
    settings = dict(url=url, trusted_keys=(public.to_base64(),), ca_bundle=str(pki.ca), timeout=2.0, retries=0,
                    backoff=0.01)
    settings.update(banlist)
    return Config(state_dir=str(state), banlist=BanlistConfig(**settings))  # type: ignore[arg-type]


def _in_thread(config: Config) -> tuple[threading.Thread, list[RefreshResult]]:
    results: list[RefreshResult] = []
    thread = threading.Thread(target=lambda: results.append(refresh(config, Path(config.state_dir), NOW)),
                              daemon=True)
    thread.start()
    return thread, results


def _bounded(config: Config) -> tuple[RefreshResult, float]:
    began = time.monotonic()
    thread, results = _in_thread(config)
    thread.join(BOUND)
    if thread.is_alive():
        pytest.fail(f"refresh still running after {BOUND:g}s")
    return results[0], time.monotonic() - began


@pytest.mark.parametrize("step", [("trickle", banlist_yaml(5) * 40), ("trickle-headers", None)])
def test_a_trickling_server_is_cut_off_at_the_deadline(tmp_path, pki, keys, scripted, step) -> None:
    scripted.script(step)
    config = _config(tmp_path / "state", pki, scripted.url("banlist.yaml"), keys[1], deadline=2.0)
    result, took = _bounded(config)
    assert result.error is not None and "took longer than the 2s deadline for the whole exchange" in result.error, result.error
    assert not cache.cache_dir(tmp_path / "state").exists()


def test_retries_stop_at_the_deadline(tmp_path, pki, keys, scripted) -> None:
    scripted.script(("status", 503))
    config = _config(tmp_path / "state", pki, scripted.url("banlist.yaml"), keys[1], deadline=2.0, retries=50,
                     backoff=0.5)
    result, _ = _bounded(config)
    assert "no time left to retry within the 2s deadline" in result.error
    assert 1 < len(scripted.requests) < 50


def test_the_cache_lock_is_free_while_a_download_is_slow(tmp_path, pki, keys, scripted) -> None:
    data = banlist_yaml(5)
    scripted.script(("gated", data), ("body", sign(data, keys[0], "s").encode()))
    state = tmp_path / "state"
    config = _config(state, pki, scripted.url("banlist.yaml"), keys[1], deadline=30.0, timeout=30.0)
    thread, results = _in_thread(config)
    wait_until(scripted.waiting.is_set, timeout=BOUND)
    with open(state / cache.LOCK_FILE, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise BlockingIOError if the download held it
        fcntl.flock(lock, fcntl.LOCK_UN)
    scripted.gate.set()
    thread.join(BOUND)
    assert results and results[0].error is None and results[0].info.serial == 5


def test_a_slow_download_cannot_roll_back_a_list_committed_meanwhile(tmp_path, pki, keys, scripted, site) -> None:
    """Serial 6 is on its way slowly when another refresh commits serial 7: the slow one must be
    compared with serial 7 (read under the lock at commit time), not with the empty cache it saw."""
    state = tmp_path / "state"
    old = banlist_yaml(6)
    scripted.script(("gated", old), ("body", sign(old, keys[0], "s").encode()))
    slow, results = _in_thread(_config(state, pki, scripted.url("banlist.yaml"), keys[1], deadline=30.0,
                                       timeout=30.0))
    wait_until(scripted.waiting.is_set, timeout=BOUND)
    site.publish(banlist_yaml(7), keys[0])
    fast = refresh(_config(state, pki, site.url(), keys[1]), state, NOW)
    assert fast.error is None and fast.info.serial == 7
    before = {p.name: p.read_bytes() for p in cache.cache_dir(state).iterdir()}
    scripted.gate.set()
    slow.join(BOUND)
    assert "rollback from serial 7 to 6 refused" in results[0].error
    assert {p.name: p.read_bytes() for p in cache.cache_dir(state).iterdir()} == before


def _dated(serial: int, issued: datetime, expires: datetime | None = None) -> bytes:
    text = banlist_yaml(serial, expires=expires).decode()
    return text.replace("issued: 2026-11-01T00:00:00Z", f"issued: {issued.isoformat()}").encode()


def test_a_list_issued_in_the_future_is_refused_and_the_cache_kept(tmp_path, pki, keys, site) -> None:
    state = tmp_path / "state"
    config = _config(state, pki, site.url(), keys[1])
    site.publish(_dated(5, NOW - timedelta(days=1)), keys[0])
    assert refresh(config, state, NOW).error is None
    before = {p.name: p.read_bytes() for p in cache.cache_dir(state).iterdir()}
    site.publish(_dated(6, datetime(2099, 1, 1, tzinfo=timezone.utc)), keys[0])
    result = refresh(config, state, NOW)
    assert "issued 2099-01-01T00:00:00+00:00, in the future" in result.error
    assert result.info.serial == 5
    assert {p.name: p.read_bytes() for p in cache.cache_dir(state).iterdir()} == before
    site.publish(_dated(7, NOW + timedelta(minutes=2)), keys[0])  # within the clock skew: fine
    assert refresh(config, state, NOW).info.serial == 7


def test_a_list_without_expires_goes_stale_after_max_age(tmp_path, pki, keys, site) -> None:
    state = tmp_path / "state"
    site.publish(_dated(5, datetime(2001, 1, 1, tzinfo=timezone.utc)), keys[0])
    result = refresh(_config(state, pki, site.url(), keys[1]), state, NOW)
    assert result.info.stale and result.info.stale_since == datetime(2001, 4, 1, tzinfo=timezone.utc)  # 90 days
    fresh = refresh(_config(state, pki, site.url(), keys[1], max_age="365d"), state, datetime(2001, 6, 1,
                                                                                            tzinfo=timezone.utc))
    assert not fresh.info.stale
