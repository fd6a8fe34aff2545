"""The ban-list parser: what it accepts, and that every bad document is one clear line."""

from __future__ import annotations

import dataclasses
import json
from datetime import timezone

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.banlist.parse import BanListError, parse_banlist
from agent.banlist.source import bundled_banlist, bundled_bytes
from agent.model import Entry, Match, spelled

MINIMAL = {
    "format": "appban.banlist/v1", "serial": 7, "issued": "2026-01-01T00:00:00Z",
    "entries": [{"id": "tiktok", "name": "TikTok", "match": {"android": ["com.zhiliaoapp.Musically"]}}],
}


def doc(**changes) -> bytes:
    data = json.loads(json.dumps(MINIMAL))
    data.update(changes)
    return yaml.safe_dump(data, allow_unicode=True).encode()


def entry_doc(**fields) -> bytes:
    entry = {"id": "tiktok", "name": "TikTok", **fields}
    return doc(entries=[entry])


def test_minimal_yaml_and_json_give_the_same_list():
    from_yaml = parse_banlist(doc())
    from_json = parse_banlist(json.dumps(MINIMAL).encode())
    assert from_yaml == from_json
    assert from_yaml.serial == 7
    assert from_yaml.issued.tzinfo is not None


def test_identifiers_are_case_folded():
    banlist = parse_banlist(doc())
    assert banlist.entries[0].match.android == ("com.zhiliaoapp.musically",)


def test_naive_and_date_only_timestamps_are_read_as_utc():
    banlist = parse_banlist(entry_doc(effective="2023-02-28"))
    assert banlist.entries[0].effective.tzinfo == timezone.utc


def test_bundled_example_list_is_valid_and_researched():
    banlist = parse_banlist(bundled_bytes(), "bundled")
    ids = {e.id for e in banlist.entries}
    assert {"tiktok", "wechat", "kaspersky"} <= ids
    tiktok = next(e for e in banlist.entries if e.id == "tiktok")
    assert "com.zhiliaoapp.musically" in tiktok.match.android
    assert "com.ss.android.ugc.trill" in tiktok.match.android
    assert all(e.references for e in banlist.entries), "every entry cites its directive"


def test_bundled_json_is_the_yaml_people_edit() -> None:
    """appban loads the JSON (fast, no PyYAML); people edit the YAML. scripts/banlist-json makes
    one from the other, and the two must give the same list."""
    import subprocess
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2]
    yaml_list = parse_banlist((folder / "config/banlist.example.yaml").read_bytes(), "yaml")
    assert parse_banlist(bundled_bytes(), "json") == yaml_list
    check = subprocess.run([sys.executable, str(folder / "scripts/banlist-json"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def _same(one: object, two: object) -> bool:
    """Equal, of the same types all the way down, with the same spelling of folded identifiers
    (a Folded tuple equals the plain tuple of its folded values)."""
    if type(one) is not type(two):
        return False
    if dataclasses.is_dataclass(one):
        return all(_same(getattr(one, f.name), getattr(two, f.name)) for f in dataclasses.fields(one))
    if isinstance(one, tuple):
        return (len(one) == len(two) and spelled(one) == spelled(two)  # type: ignore[arg-type]
                and all(_same(a, b) for a, b in zip(one, two)))  # type: ignore[call-overload]
    return one == two and repr(one) == repr(two)


def test_a_check_of_the_bundled_list_gets_what_parsing_its_json_gives() -> None:
    """A check imports the bundled list's Python twin (agent.bundled.banlist_example, written by
    scripts/banlist-json, which the test above keeps up to date) instead of parsing the JSON."""
    parsed = parse_banlist(bundled_bytes(), "bundled")
    assert _same(bundled_banlist(), parsed)
    assert any(spelled(e.match.names) != e.match.names for e in parsed.entries)  # folded ones are compared
    assert not _same(dataclasses.replace(parsed, entries=parsed.entries[1:]), parsed)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (entry_doc(colour="red"), "entry 'tiktok' (#1) field 'colour': unknown key"),
        (entry_doc(match={"android": "com.x"}), "entry 'tiktok' (#1) field 'match.android': expected a list"),
        (entry_doc(match={"androids": ["x"]}), "field 'match.androids': unknown key"),
        (entry_doc(action="delete"), "field 'action': expected one of report, block"),
        (entry_doc(versions="around 3"), "field 'versions': bad version constraint"),
        (entry_doc(effective="last tuesday"), "field 'effective': expected an ISO 8601 timestamp"),
        (doc(entries=[{"id": "Tik Tok", "name": "x"}]), "field 'id': 'Tik Tok' does not match"),
        (doc(entries=[{"id": "a"}]), "entry 'a' (#1) field 'name': required key is missing"),
        (doc(entries=[{"id": "a", "name": "x"}, {"id": "a", "name": "y"}]), "entry 'a': duplicate id"),
        (doc(serial="12"), "field 'serial': expected an integer"),
        (doc(serial=True), "field 'serial': expected an integer"),
        (doc(format="appban.banlist/v2"), "field 'format' must be 'appban.banlist/v1'"),
        (doc(exceptions=[{"entry": "nope", "devices": ["d"], "approved_by": "x", "reason": "r",
                          "expires": "2030-01-01"}]), "exception #1 field 'entry': no entry 'nope'"),
        (doc(exceptions=[{"entry": "tiktok", "approved_by": "x", "reason": "r", "expires": "2030-01-01"}]),
         "blanket exceptions are not allowed"),
        (doc(exceptions=[{"entry": "tiktok", "devices": ["d"], "approved_by": "x", "reason": "r"}]),
         "exception 'tiktok' (#1) field 'expires': required key is missing"),
        (entry_doc(match={"sha256": ["abc123"]}), "field 'match.sha256': 'abc123' does not match [0-9a-fA-F]{64}"),
        (b"serial: 1\nserial: 2\n", "duplicate key 'serial'"),
        (b"a: &x [1, 2]\nb: *x\n", "YAML aliases are not allowed"),
        (b"- just\n- a list\n", "expected a mapping at the top level"),
        (b"\xff\xfe\x00", "not UTF-8 text"),
        (b"{\"format\": ", "not valid YAML or JSON"),
    ],
)
def test_bad_documents_give_one_line_naming_the_place(document, message):
    with pytest.raises(BanListError) as caught:
        parse_banlist(document, "list.yaml")
    text = str(caught.value)
    assert message in text
    assert text.startswith("list.yaml: ")
    assert "\n" not in text


def test_yaml_flow_mapping_is_yaml_not_broken_json():
    """A document starting with `{` is tried as JSON first (fast), but `{format: ..., serial: 1}`
    is valid YAML and must be read as such; a broken JSON document still names the JSON error."""
    flow = b"{format: appban.banlist/v1, serial: 3, issued: 2026-01-01, entries: [{id: a, name: A}]}"
    assert parse_banlist(flow).serial == 3
    with pytest.raises(BanListError, match="not valid YAML or JSON: Expecting ',' delimiter"):
        parse_banlist(b'{"format": "appban.banlist/v1"')
    with pytest.raises(BanListError, match="duplicate key 'serial'"):
        parse_banlist(b'{"serial": 1, "serial": 2}')


def test_oversized_document_is_refused():
    with pytest.raises(BanListError, match="over the .*-byte limit"):
        parse_banlist(b"#" * (16 * 1024 * 1024 + 1))


def test_alias_bomb_is_refused_quickly():
    bomb = b"a: &a [x,x,x,x,x,x,x,x,x]\n" + b"".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n".encode() for i in range(9)
    )
    with pytest.raises(BanListError, match="aliases are not allowed"):
        parse_banlist(bomb)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_give_a_traceback(data):
    try:
        parse_banlist(data)
    except BanListError as exc:
        assert "\n" not in str(exc)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "name", "match", "action", "applies_to", "versions",
                                        "effective", "exempt", "references", "extra"]), json_values))
def test_arbitrary_entries_give_an_error_or_a_list_never_a_traceback(entry):
    document = json.dumps({**MINIMAL, "entries": [entry]}).encode()
    try:
        parse_banlist(document)
    except BanListError as exc:
        assert "\n" not in str(exc)


def test_schema_builds_records_equal_to_their_constructor() -> None:
    """schema.build fills a record's __dict__ instead of calling its __init__: the result must
    be the record the constructor makes, defaults and factories included."""
    banlist = parse_banlist(entry_doc(match={"android": ["Com.Example"]}, exempt=["x"]))
    entry = banlist.entries[0]
    assert entry == Entry(id=entry.id, name=entry.name, match=Match(android=("com.example",)), exempt=("x",))
    assert hash(entry) == hash(Entry(id=entry.id, name=entry.name, match=Match(android=("com.example",)), exempt=("x",)))


def _outcome(action) -> tuple[str, object]:
    try:
        return "built", action()
    except Exception as exc:  # noqa: BLE001 - the two paths must fail alike, whatever they raise
        return type(exc).__name__, str(exc)


words = st.sampled_from(["tiktok", "Com.Example.App", "com.example.app", "Banned App*", "x.example.com",
                         "*.Example.com", "a" * 64, "ABCDE12345"])
identifiers = st.lists(words, max_size=3)
FIELDS = {
    "match": st.dictionaries(st.sampled_from(["android", "ios", "windows", "names", "publishers", "sha256", "domains"]),
                             identifiers, max_size=3),
    "vendor": words, "action": st.sampled_from(["report", "block"]), "applies_to": identifiers,
    "exempt": identifiers, "references": identifiers, "versions": st.sampled_from([">= 2", "around 3"]),
    "device_kinds": st.sampled_from([["android"], ["phone"], []]), "ownership": st.sampled_from([["corporate"], ["owned"]]),
}


@st.composite
def entries(draw: st.DrawFn) -> dict:
    """An entry of fields in their JSON types (some values still refused by a pattern or check),
    one of them perhaps replaced by a value of the wrong type or an unknown key."""
    entry = {"id": "tiktok", "name": "TikTok", **draw(st.fixed_dictionaries({}, optional=FIELDS))}
    spoiled = draw(st.sampled_from([None] * 4 + ["id", "name", "match", "vendor", "exempt", "unknown"]))
    if spoiled is not None:
        entry[spoiled] = draw(SPOILS.get(spoiled, WRONG))
    return entry


WRONG = st.sampled_from([7, None, True, [7], ["a", None], "Bad Id"])
SPOILS = {"match": st.sampled_from([{"android": [7]}, {"android": "com.a"}, {"ios": ["a", None]}, {"unknown": []}])}


@settings(max_examples=400, deadline=None)
@given(entries())
def test_the_fast_build_gives_what_the_ordered_build_gives_or_the_same_error(entry) -> None:
    """schema.build first tries its fast path (strings and identifier lists taken without a
    per-value call, errors not located) and only on trouble builds in declaration order: for
    any entry, the record or the error must be what building in order at every level gives,
    the spelling kept too."""
    from unittest import mock

    from agent import schema

    path = ("entries", 0)
    fast = _outcome(lambda: schema.build(Entry, entry, path))
    with mock.patch.object(schema, "_build_direct", return_value=None):  # the ordered build only
        ordered = _outcome(lambda: schema.build(Entry, entry, path))
    assert fast == ordered
    if fast[0] == "built":
        assert [spelled(v) for v in vars(fast[1].match).values()] == \
            [spelled(v) for v in vars(ordered[1].match).values()]


def test_folded_identifiers_keep_their_spelling_and_folded_ones_stay_plain_tuples() -> None:
    mixed = parse_banlist(entry_doc(match={"android": ["Com.Example"], "ios": ["com.example"]})).entries[0].match
    assert (mixed.android, spelled(mixed.android)) == (("com.example",), ("Com.Example",))
    assert (mixed.ios, spelled(mixed.ios), type(mixed.ios)) == (("com.example",), ("com.example",), tuple)


def test_a_duplicate_key_inside_an_entry_is_named() -> None:
    document = b'{"format": "appban.banlist/v1", "serial": 1, "issued": "2026-01-01", ' \
               b'"entries": [{"id": "a", "name": "A", "name": "B"}]}'
    with pytest.raises(BanListError, match="duplicate key 'name'"):
        parse_banlist(document)
