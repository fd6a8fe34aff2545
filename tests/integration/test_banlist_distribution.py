"""Signed ban-list distribution against real servers: nginx over HTTPS on 127.0.0.1 with a test CA.

Every refused download must leave the last-known-good cache byte-identical, keep the old list in
force and say in one line what went wrong and which serial stays. The scripted Python server
(tests/banlist_servers.py) only plays what nginx will not do on demand: 503 sequences, a hang, a
body cut short, an endless body.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pytest

from agent.banlist import cache
from agent.banlist.parse import BanListError
from agent.banlist.signature import PublicKey, SecretKey, generate_keypair, sign
from agent.banlist.central import refresh
from agent.banlist.source import load_active, load_fresh
from agent.config import BanlistConfig, Config

from tests.banlist_fixtures import direct, nginx, pki, scripted, site  # noqa: F401 - fixtures are used by name
from tests.banlist_servers import Pki, ScriptedServer, Site, banlist_yaml, free_port
from tests.conftest import require_tool

require_tool("nginx")

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
Keys = dict[str, tuple[SecretKey, PublicKey]]


@pytest.fixture(scope="module")
def keys() -> Keys:
    return {name: generate_keypair() for name in ("publisher", "rotated", "stranger")}


@pytest.fixture(autouse=True)
def _direct(direct: None) -> None:
    """Every test here talks to 127.0.0.1 without a proxy (one test then sets one on purpose)."""


def make_config(tmp_path: Path, pki: Pki, url: str, trusted: tuple[PublicKey, ...], **banlist: object) -> Config:
    settings = dict(url=url, trusted_keys=tuple(k.to_base64() for k in trusted), ca_bundle=str(pki.ca),
                    timeout=30.0, retries=2, backoff=0.01)  # the limit for a hang; loaded machines are slow
    settings.update(banlist)
    return Config(state_dir=str(tmp_path / "state"), banlist=BanlistConfig(**settings))  # type: ignore[arg-type]


def snapshot(config: Config) -> dict[str, bytes]:
    folder = cache.cache_dir(Path(config.state_dir))
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def run(config: Config):
    return refresh(config, Path(config.state_dir), NOW)


def fetched_once(tmp_path: Path, pki: Pki, keys: Keys, site: Site) -> Config:
    """Publish serial 5 signed by the publisher's key, fetch it into the cache, return the config."""
    secret, public = keys["publisher"]
    site.publish(banlist_yaml(5), secret)
    config = make_config(tmp_path, pki, site.url(), (public,))
    assert run(config).error is None
    return config


def test_first_fetch_is_verified_and_cached_then_304_costs_one_request(tmp_path, pki, keys, site) -> None:
    secret, public = keys["publisher"]
    site.publish(banlist_yaml(1), secret)
    config = make_config(tmp_path, pki, site.url(), (public,))

    first = run(config)
    assert first.error is None and first.changed
    assert (first.info.serial, first.info.signed, first.info.signer) == (1, True, public.key_id_hex)
    assert first.added == ("tiktok", "wechat") and first.previous_serial is None
    meta = cache.read_meta(Path(config.state_dir))
    assert meta is not None and meta.etag and meta.last_modified and meta.trusted_comment.startswith("serial list")

    second = run(config)
    assert second.error is None and second.not_modified and not second.changed
    assert second.info == first.info
    assert site.statuses(expected=2) == ["200", "304"]
    assert site.statuses("banlist.yaml.minisig", expected=1) == ["200"]  # a 304 costs one request, no signature

    banlist, info = load_active(config, None, NOW, Path(config.state_dir))
    assert (banlist.serial, info.source, info.signer) == (1, site.url(), public.key_id_hex)


def test_new_serial_replaces_the_cache_and_reports_entry_changes(tmp_path, pki, keys, site) -> None:
    secret, public = keys["publisher"]
    config = make_config(tmp_path, pki, site.url(), (public,))
    site.publish(banlist_yaml(1, ("tiktok", "wechat")), secret)
    assert run(config).error is None
    site.publish(banlist_yaml(2, ("wechat", "deepseek"), names={"wechat": "Weixin"}), secret)

    result = run(config)
    assert result.error is None and result.changed and result.previous_serial == 1
    assert (result.added, result.removed, result.updated) == (("deepseek",), ("tiktok",), ("wechat",))
    assert sorted(snapshot(config)) == ["banlist.json", "list-2", "list-2.minisig"]


def test_same_bytes_served_again_are_accepted_without_a_change(tmp_path, pki, keys, site) -> None:
    config = fetched_once(tmp_path, pki, keys, site)
    site.put("banlist.yaml", banlist_yaml(5))  # touched: new ETag and Last-Modified, same bytes
    result = run(config)
    assert result.error is None and not result.changed and not result.not_modified
    assert result.info.serial == 5 and site.statuses(expected=2) == ["200", "200"]
    assert cache.read_meta(Path(config.state_dir)).etag == site_etag(site)


def site_etag(site: Site) -> str:
    stat = (site.folder / "banlist.yaml").stat()
    return f'"{int(stat.st_mtime):x}-{stat.st_size:x}"'  # how nginx spells a static file's ETag


def test_list_signed_by_the_real_minisign_is_accepted(tmp_path, pki, site) -> None:
    minisign = require_tool("minisign")
    work = tmp_path / "publisher"
    work.mkdir()
    run_tool = dict(cwd=work, stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=True,
                    start_new_session=True)
    subprocess.run([minisign, "-G", "-W", "-p", "pub", "-s", "sec"], **run_tool)
    (work / "banlist.yaml").write_bytes(banlist_yaml(3))
    subprocess.run([minisign, "-S", "-s", "sec", "-m", "banlist.yaml", "-t", "serial 3"], **run_tool)
    site.put("banlist.yaml.minisig", (work / "banlist.yaml.minisig").read_bytes())
    site.put("banlist.yaml", (work / "banlist.yaml").read_bytes())
    pub_line = (work / "pub").read_text().splitlines()[1]
    config = make_config(tmp_path, pki, site.url(), ())
    config = dataclasses.replace(config, banlist=dataclasses.replace(config.banlist, trusted_keys=(pub_line,)))

    result = run(config)
    assert result.error is None and result.info.serial == 3 and result.info.signed
    assert cache.read_meta(Path(config.state_dir)).trusted_comment == "serial 3"


def _bad_cases(keys: Keys) -> dict[str, tuple[Callable[[Site], None], str]]:
    """Each case breaks a healthy site (serving serial 5) in one way; the value is what the error says."""
    secret = keys["publisher"][0]
    good = banlist_yaml(5)

    def tampered(site: Site) -> None:
        site.publish(banlist_yaml(6), secret)
        site.put("banlist.yaml", banlist_yaml(6).replace(b"Tiktok", b"Tiktak"))

    def truncated_file(site: Site) -> None:
        data = banlist_yaml(6)
        site.publish(data, secret)
        site.put("banlist.yaml", data[: len(data) // 2])

    bomb = b"format: appban.banlist/v1\nserial: 6\nissued: 2026-11-01\na: &a [x, x, x, x, x, x, x, x]\n" + b"".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n".encode()
        for i in range(9)
    ) + b"entries: []\n"
    schema_error = banlist_yaml(6).replace(b"    name: Wechat\n", b"    name: [Wechat]\n")
    return {
        "http-404": (lambda s: (s.folder / "banlist.yaml").unlink(), "HTTP 404"),
        "signature-404": (lambda s: s.publish(banlist_yaml(6), None), "banlist.yaml.minisig: HTTP 404"),
        "tampered-bytes": (tampered, "signature verification failed"),
        "untrusted-key": (lambda s: s.publish(banlist_yaml(6), keys["stranger"][0]),
                          f"signed by untrusted key id {keys['stranger'][1].key_id_hex}"),
        "rollback": (lambda s: s.publish(banlist_yaml(4), secret), "rollback from serial 5 to 4 refused"),
        "same-serial-changed-bytes": (lambda s: s.publish(good.replace(b"Tiktok", b"TikTok"), secret),
                                      "serial 5 republished with different content refused"),
        "truncated-file": (truncated_file, "signature verification failed"),
        "yaml-alias-bomb": (lambda s: s.publish(bomb, secret), "YAML aliases are not allowed"),
        "bad-yaml": (lambda s: s.publish(b"format: appban.banlist/v1\nserial: [6\n", secret), "not valid YAML"),
        "schema-error": (lambda s: s.publish(schema_error, secret),
                         "entry 'wechat' (#2) field 'name': expected a string"),
        "server-error": (lambda s: s.put("banlist.yaml.fail", b""), "HTTP 500"),
    }


BAD_CASES = ("http-404", "signature-404", "tampered-bytes", "untrusted-key", "rollback", "same-serial-changed-bytes",
             "truncated-file", "yaml-alias-bomb", "bad-yaml", "schema-error", "server-error")


@pytest.mark.parametrize("case", BAD_CASES)
def test_refused_download_keeps_the_cache_byte_identical(tmp_path, pki, keys, site, case) -> None:
    config = fetched_once(tmp_path, pki, keys, site)
    before = snapshot(config)
    breaks, expected = _bad_cases(keys)[case]
    breaks(site)

    result = run(config)

    assert result.error is not None and not result.changed
    assert result.error.startswith(f"ban list {site.url()}: ")
    assert expected in result.error
    assert result.error.endswith(f"keeping serial 5 fetched {NOW.isoformat()}")
    assert "\n" not in result.error
    assert result.info.serial == 5
    assert snapshot(config) == before
    assert load_active(config, None, NOW, Path(config.state_dir))[0].serial == 5


def test_server_error_is_retried_then_the_server_recovers(tmp_path, pki, keys, site) -> None:
    secret = keys["publisher"][0]
    config = fetched_once(tmp_path, pki, keys, site)
    site.put("banlist.yaml.fail", b"")

    assert "HTTP 500" in run(config).error
    assert site.statuses(expected=4)[1:] == ["500", "500", "500"]  # the first try and two retries

    (site.folder / "banlist.yaml.fail").unlink()
    site.publish(banlist_yaml(6), secret)
    recovered = run(config)
    assert recovered.error is None and recovered.changed and recovered.info.serial == 6


def test_wrong_ca_is_a_tls_error(tmp_path, pki, keys, site) -> None:
    secret, public = keys["publisher"]
    site.publish(banlist_yaml(5), secret)
    config = make_config(tmp_path, pki, site.url(), (public,), ca_bundle=str(pki.other_ca))
    result = run(config)
    assert result.info is None and result.error is not None
    assert "TLS error" in result.error and "certificate verify failed" in result.error
    assert result.error.endswith("; no ban list in force")
    assert snapshot(config) == {}
    assert site.statuses() == []  # nothing was sent before the certificate was checked


def test_mutual_tls(tmp_path, pki, keys, site) -> None:
    secret, public = keys["publisher"]
    site.publish(banlist_yaml(5), secret)
    anonymous = make_config(tmp_path / "anonymous", pki, site.url(mtls=True), (public,))
    assert "HTTP 400" in run(anonymous).error  # nginx: "No required SSL certificate was sent"
    known = make_config(tmp_path / "known", pki, site.url(mtls=True), (public,),
                        client_cert=str(pki.client_cert), client_key=str(pki.client_key))
    result = run(known)
    assert result.error is None and result.info.serial == 5


def test_redirects_are_followed_only_over_https(tmp_path, pki, keys, site, nginx) -> None:
    secret, public = keys["publisher"]
    site.publish(banlist_yaml(5), secret)
    moved = run(make_config(tmp_path / "moved", pki, nginx.url(f"moved/{site.path()}"), (public,)))
    assert moved.error is None and moved.info.serial == 5
    downgrade = make_config(tmp_path / "downgrade", pki, nginx.url(f"downgrade/{site.path()}"), (public,))
    result = run(downgrade)
    assert f"redirected to http://127.0.0.1:{nginx.port}/{site.path()}, which is not https" in result.error
    assert snapshot(downgrade) == {}


def test_rotated_key(tmp_path, pki, keys, site) -> None:
    old_secret, old_public = keys["publisher"]
    new_secret, new_public = keys["rotated"]
    site.publish(banlist_yaml(5), old_secret)
    during = make_config(tmp_path, pki, site.url(), (old_public, new_public))
    assert run(during).info.signer == old_public.key_id_hex

    site.publish(banlist_yaml(6), new_secret)
    result = run(during)
    assert result.error is None and result.info.serial == 6 and result.info.signer == new_public.key_id_hex

    after = make_config(tmp_path, pki, site.url(), (new_public,))
    assert load_active(after, None, NOW, Path(after.state_dir))[1].signer == new_public.key_id_hex
    site.publish(banlist_yaml(7), old_secret)  # the retired key no longer vouches for anything
    before = snapshot(after)
    refused = run(after)
    assert f"signed by untrusted key id {old_public.key_id_hex}" in refused.error
    assert refused.info.serial == 6 and snapshot(after) == before


def test_cached_list_signed_by_a_key_no_longer_trusted_is_not_used(tmp_path, pki, keys, site) -> None:
    config = fetched_once(tmp_path, pki, keys, site)
    revoked = make_config(tmp_path, pki, site.url(), (keys["rotated"][1],))
    with pytest.raises(BanListError, match="cached list unusable: signed by untrusted key id"):
        load_active(revoked, None, NOW, Path(revoked.state_dir))


def test_damaged_cache_is_not_used_and_the_next_refresh_repairs_it(tmp_path, pki, keys, site) -> None:
    config = fetched_once(tmp_path, pki, keys, site)
    list_file = cache.cache_dir(Path(config.state_dir)) / "list-5"
    list_file.write_bytes(list_file.read_bytes().replace(b"Tiktok", b"Tiktak"))
    with pytest.raises(BanListError, match="cached list unusable: .*list-5: content does not match its recorded hash"):
        load_active(config, None, NOW, Path(config.state_dir))

    repaired = run(config)
    assert repaired.error is None and repaired.info.serial == 5
    assert site.statuses(expected=2) == ["200", "200"]  # no conditional GET for a copy that is not usable
    assert load_active(config, None, NOW, Path(config.state_dir))[0].serial == 5


def test_expired_list_is_used_but_stale(tmp_path, pki, keys, site) -> None:
    secret, public = keys["publisher"]
    expired = NOW - timedelta(days=3)
    site.publish(banlist_yaml(5, expires=expired), secret)
    config = make_config(tmp_path, pki, site.url(), (public,))
    result = run(config)
    assert result.error is None and result.changed
    assert (result.info.stale, result.info.stale_since) == (True, expired)
    info = load_active(config, None, NOW, Path(config.state_dir))[1]
    assert (info.stale, info.stale_since) == (True, expired)
    fresh = load_active(config, None, expired - timedelta(days=1), Path(config.state_dir))[1]
    assert not fresh.stale


def test_oversized_body_is_refused_by_its_length(tmp_path, pki, keys, site) -> None:
    secret, public = keys["publisher"]
    data = banlist_yaml(5)
    site.publish(data, secret)
    config = make_config(tmp_path, pki, site.url(), (public,), max_bytes=len(data) - 1)
    result = run(config)
    assert f"too large: {len(data)} bytes, over the {len(data) - 1}-byte limit" in result.error
    assert snapshot(config) == {}


def test_unsigned_list_refused_unless_allowed(tmp_path, pki, keys, site) -> None:
    site.publish(banlist_yaml(5), None)
    strict = make_config(tmp_path / "strict", pki, site.url(), (keys["publisher"][1],))
    assert "banlist.yaml.minisig: HTTP 404" in run(strict).error
    no_keys = make_config(tmp_path / "nokeys", pki, site.url(), ())
    assert "no banlist.trusted_keys configured" in run(no_keys).error

    lab = make_config(tmp_path / "lab", pki, site.url(), (), allow_unsigned=True)
    result = run(lab)
    assert result.error is None and not result.info.signed and result.info.signer == ""
    assert load_active(lab, None, NOW, Path(lab.state_dir))[1].signed is False
    locked = dataclasses.replace(lab, banlist=dataclasses.replace(lab.banlist, allow_unsigned=False,
                                                                  trusted_keys=(keys["publisher"][1].to_base64(),)))
    with pytest.raises(BanListError, match="no signature, and unsigned lists are not allowed"):
        load_active(locked, None, NOW, Path(locked.state_dir))


def test_server_down_at_start_with_and_without_cache(tmp_path, pki, keys, site) -> None:
    config = fetched_once(tmp_path, pki, keys, site)
    before = snapshot(config)
    down = f"https://127.0.0.1:{free_port()}/banlist.yaml"
    cached = dataclasses.replace(config, banlist=dataclasses.replace(config.banlist, url=down))

    banlist, info, warning = load_fresh(cached, None, NOW, Path(cached.state_dir))
    assert banlist.serial == 5 and info.serial == 5
    assert warning == f"ban list {down}: connection refused (server down?); keeping serial 5 fetched {NOW.isoformat()}"
    assert snapshot(config) == before

    empty = dataclasses.replace(cached, state_dir=str(tmp_path / "empty"))
    with pytest.raises(BanListError) as raised:
        load_fresh(empty, None, NOW, Path(empty.state_dir))
    assert str(raised.value) == f"ban list {down}: connection refused (server down?); no ban list in force"


def test_proxy_from_the_environment_is_used(tmp_path, pki, keys, site, monkeypatch) -> None:
    secret, public = keys["publisher"]
    site.publish(banlist_yaml(5), secret)
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    result = run(make_config(tmp_path, pki, site.url(), (public,)))
    assert "proxy error" in result.error and site.statuses() == []


def test_dns_failure_is_named(tmp_path, pki, keys, monkeypatch) -> None:
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)  # a real lookup would leave the machine
    result = run(make_config(tmp_path, pki, "https://banlist.example.invalid/list.yaml", (keys["publisher"][1],)))
    assert "DNS lookup failed" in result.error and "Name or service not known" in result.error


# --- what nginx will not do on demand ----------------------------------------------------------


def _scripted_config(tmp_path: Path, pki: Pki, server: ScriptedServer, keys: Keys, **banlist: object) -> Config:
    return make_config(tmp_path, pki, server.url("banlist.yaml"), (keys["publisher"][1],), **banlist)


def test_5xx_sequence_is_retried_within_one_refresh(tmp_path, pki, keys, scripted) -> None:
    data = banlist_yaml(5)
    signature = sign(data, keys["publisher"][0], "s").encode()
    scripted.script(("status", 503), ("status", 502), ("body", data), ("body", signature))
    result = run(_scripted_config(tmp_path, pki, scripted, keys))
    assert result.error is None and result.info.serial == 5
    assert scripted.requests == ["/banlist.yaml"] * 3 + ["/banlist.yaml.minisig"]


def test_4xx_is_not_retried(tmp_path, pki, keys, scripted) -> None:
    scripted.script(("status", 403))
    result = run(_scripted_config(tmp_path, pki, scripted, keys))
    assert "HTTP 403" in result.error and scripted.requests == ["/banlist.yaml"]


def test_hanging_server_times_out_and_keeps_the_cache(tmp_path, pki, keys, scripted) -> None:
    data = banlist_yaml(5)
    scripted.script(("body", data), ("body", sign(data, keys["publisher"][0], "s").encode()), ("hang", None))
    assert run(_scripted_config(tmp_path, pki, scripted, keys)).error is None  # no 0.5 s race here
    config = _scripted_config(tmp_path, pki, scripted, keys, timeout=0.5)
    before = snapshot(config)
    result = run(config)
    assert "timed out after 0.5s" in result.error and result.error.endswith(f"keeping serial 5 fetched {NOW.isoformat()}")
    assert snapshot(config) == before
    assert len(scripted.requests) == 3  # a read timeout is not retried: the server is up but stuck


def test_transfer_cut_short_is_refused(tmp_path, pki, keys, scripted) -> None:
    scripted.script(("truncate", banlist_yaml(5)))
    config = _scripted_config(tmp_path, pki, scripted, keys)
    result = run(config)
    assert "transfer cut short" in result.error and snapshot(config) == {}


def test_endless_body_without_length_is_cut_off(tmp_path, pki, keys, scripted) -> None:
    scripted.script(("endless", None))
    config = _scripted_config(tmp_path, pki, scripted, keys, max_bytes=200_000)
    result = run(config)
    assert "too large: more than the 200000-byte limit" in result.error and snapshot(config) == {}
