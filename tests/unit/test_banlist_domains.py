"""Match kind `domains`: what a DNS name in a ban list may be, its normal form, and the JSON Schema
of the whole format (which the bundled list must satisfy)."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from datetime import date, datetime
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from agent.banlist.parse import BanListError, parse_banlist
from agent.banlist.source import bundled_bytes
from agent.domains import normalise_domain
from agent.model import BanException, BanList, Entry, Match

SCHEMA = json.loads((Path(__file__).parents[2] / "docs/schemas/banlist-v1.schema.json").read_text())


def listing(*domains: str) -> bytes:
    return yaml.safe_dump({
        "format": "appban.banlist/v1", "serial": 1, "issued": "2026-01-01T00:00:00Z",
        "entries": [{"id": "tiktok", "name": "TikTok", "match": {"domains": list(domains)}}],
    }, allow_unicode=True).encode()


@pytest.mark.parametrize(("given_name", "stored"), [
    ("tiktokv.com", "tiktokv.com"),
    ("TikTokV.COM.", "tiktokv.com"),
    ("*.tiktokcdn.com", "*.tiktokcdn.com"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("*.Bücher.de", "*.xn--bcher-kva.de"),
    ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("weixin.qq.com.cn", "weixin.qq.com.cn"),
])
def test_names_are_stored_lower_case_as_a_labels(given_name: str, stored: str) -> None:
    assert parse_banlist(listing(given_name)).entries[0].match.domains == (stored,)


def test_duplicates_after_normalising_are_dropped_in_order() -> None:
    assert parse_banlist(listing("b.com", "A.com", "a.com", "B.com.")).entries[0].match.domains == ("b.com", "a.com")


@pytest.mark.parametrize(("bad", "message"), [
    ("192.0.2.1", "is an IP address"),
    ("2001:db8::1", "is an IP address"),
    ("[2001:db8::1]", "is an IP address"),
    ("com", "bare top-level domain"),
    ("*.com", "bare top-level domain"),
    ("*", "lone '*'"),
    ("*.", "lone '*'"),
    ("x.*.com", "only allowed as a whole first label"),
    ("*tiktok.com", "only allowed as a whole first label"),
    ("a_b.com", "not letters, digits and inner hyphens"),
    ("-a.com", "not letters, digits and inner hyphens"),
    ("a..com", "not letters, digits and inner hyphens"),
    ("a b.com", "not letters, digits and inner hyphens"),
    ("x" * 64 + ".com", "longer than 63"),
    (".".join(["a" * 60] * 5) + ".com", "longer than 253"),
    ("xn--zz.com", "not valid punycode"),
    ("example.123", "cannot be all digits"),
])
def test_what_is_not_a_dns_name_is_refused_naming_the_entry(bad: str, message: str) -> None:
    with pytest.raises(BanListError) as raised:
        parse_banlist(listing(bad))
    text = str(raised.value)
    assert "entry 'tiktok' (#1) field 'match.domains'" in text and message in text, text
    assert "\n" not in text


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(st.lists(_label, min_size=1, max_size=4), st.from_regex(r"[a-z]{2,10}", fullmatch=True), st.booleans())
def test_every_plain_name_survives_and_normalising_is_idempotent(labels: list[str], tld: str, wildcard: bool) -> None:
    name = ("*." if wildcard else "") + ".".join(labels + [tld])
    once = normalise_domain(name)
    assert once == name and normalise_domain(once) == once


def _jsonable(value: object) -> object:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    raise TypeError(type(value).__name__)


@given(st.one_of(st.ip_addresses().map(str), st.text("0123456789abcdef.:%[]x", max_size=45), st.text(max_size=12)))
def test_a_name_is_refused_as_an_address_exactly_when_ipaddress_parses_it(text: str) -> None:
    """normalise_domain skips importing ipaddress for a name that cannot be an address; it
    refuses the same names as asking ipaddress about every one would."""
    name = text.strip().removeprefix("*.")
    try:
        ipaddress.ip_address(name.removesuffix(".").strip("[]"))
        address = True
    except ValueError:
        address = False
    try:
        normalise_domain(text)
        refused = False
    except ValueError as exc:
        refused = "is an IP address" in str(exc)
    assert refused == address


def test_bundled_list_fits_the_json_schema_and_carries_cited_domains() -> None:
    raw = json.loads(json.dumps(yaml.safe_load(bundled_bytes()), default=_jsonable))
    jsonschema.validate(raw, SCHEMA)
    banlist = parse_banlist(bundled_bytes())
    entries = {e.id: e for e in banlist.entries}
    assert "*.tiktokv.com" in entries["tiktok"].match.domains
    assert entries["tiktok"].match.domains == entries["tiktok-quebec-assembly"].match.domains
    assert "*.wechat.com" in entries["wechat"].match.domains
    assert "*.kaspersky.com" in entries["kaspersky"].match.domains
    for entry in entries.values():
        if entry.match.domains:
            assert any("HostlistsRegistry" in r or "domain-list-community" in r for r in entry.references), entry.id
    everything = {d for e in entries.values() for d in e.match.domains}
    shared = ("akamaized.net", "fastly.net", "cloudfront.net", "qq.com", "volcengine.com")
    assert not [d for d in everything if d.split("*.")[-1] in shared or d.endswith(tuple("." + s for s in shared[:3]))]


@pytest.mark.parametrize("bad", ["192.0.2.1", "*", "*.", "x.*.com", "2001:db8::1"])
def test_json_schema_refuses_what_the_parser_refuses(bad: str) -> None:
    document = {"format": "appban.banlist/v1", "serial": 1, "issued": "2026-01-01T00:00:00Z",
                "entries": [{"id": "t", "name": "T", "match": {"domains": [bad]}}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)


def test_json_schema_names_exactly_the_fields_the_parser_reads() -> None:
    """The schema documents the format: a field added to the model (or removed) must be added to
    (or removed from) docs/schemas/banlist-v1.schema.json in the same change."""
    defs = SCHEMA["$defs"]
    for cls, properties in ((BanList, SCHEMA["properties"]), (Entry, defs["entry"]["properties"]),
                            (Match, defs["match"]["properties"]), (BanException, defs["exception"]["properties"])):
        assert set(properties) == {f.name for f in dataclasses.fields(cls) if f.init}, cls.__name__
