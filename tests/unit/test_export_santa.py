"""The Santa export's rule types: CDHASH, BINARY, SIGNINGID and TEAMID rules from the list's macOS
identifiers, checked against a JSON Schema written from Santa's documentation
(tests/fixtures/santa/rules-file.schema.json names the pages), and the list's own checks on them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from agent.banlist.parse import parse_banlist
from agent.errors import UserError
from agent.export import renderer
from tests.export_support import DIGEST, QUEBEC, chosen, quebec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "santa"
SCHEMA = json.loads((FIXTURES / "rules-file.schema.json").read_text())
CDHASH = "0123456789ABCDEF0123456789abcdef01234567"
TEAM = "2y8xe5cq94"
SIGNED = "22mmun2rn5:com.lemon.LVOverseas"


def _macos_list(**match: list[str]):
    entry = {**QUEBEC["entries"][0], "match": {**QUEBEC["entries"][0]["match"], **match}}
    second = {"id": "capcut", "name": "CapCut", "effective": "2024-01-01T00:00:00Z",
              "match": {"macos": ["com.lemon.lvoverseas"], "signing_ids": [SIGNED], "team_ids": [TEAM]}}
    return quebec(entries=[entry, second, *QUEBEC["entries"][1:]])


def _rules(text: str) -> list[tuple[str, str, str]]:
    document = json.loads(text)
    jsonschema.validate(document, SCHEMA)
    return [(r["rule_type"], r["identifier"], r["policy"]) for r in document["rules"]]


def test_the_schema_accepts_the_documented_shape_and_refuses_what_santa_would_not_read() -> None:
    jsonschema.validate(json.loads((FIXTURES / "rules-documented-shape.json").read_text())["document"], SCHEMA)
    for bad in ({"identifier": "abc", "rule_type": "TEAMID", "policy": "BLOCKLIST"},
                {"identifier": "com.example.app", "rule_type": "SIGNINGID", "policy": "BLOCKLIST"},
                {"identifier": "ABCDE12345", "rule_type": "BUNDLEID", "policy": "BLOCKLIST"},
                {"identifier": "ABCDE12345", "rule_type": "TEAMID", "policy": "BLOCK"},
                {"identifier": "ABCDE12345", "rule_type": "TEAMID"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"rules": [bad]}, SCHEMA)


def test_macos_identifiers_become_santa_rules_most_specific_first() -> None:
    banlist = _macos_list(cdhashes=[CDHASH], team_ids=[TEAM], signing_ids=["platform:com.apple.Chess"])
    rules = _rules(renderer("santa")(chosen(banlist, "staff")).text)
    assert rules == [
        ("CDHASH", CDHASH.lower(), "BLOCKLIST"),
        ("BINARY", DIGEST, "BLOCKLIST"),
        ("SIGNINGID", "platform:com.apple.Chess", "BLOCKLIST"),
        ("SIGNINGID", "22MMUN2RN5:com.lemon.LVOverseas", "BLOCKLIST"),  # the signing id keeps its case
        ("TEAMID", "2Y8XE5CQ94", "BLOCKLIST"),  # named by both entries, written once
    ]


def test_each_rule_says_which_entry_and_serial_blocked_it() -> None:
    document = json.loads(renderer("santa")(chosen(_macos_list(), "staff")).text)
    team = next(r for r in document["rules"] if r["rule_type"] == "TEAMID")
    assert team["custom_msg"] == "CapCut is banned on this device (capcut, ban list serial 42)"


def test_bundle_ids_are_noted_unless_a_signing_id_covers_them() -> None:
    export = renderer("santa")(chosen(_macos_list(), "staff"))
    notes = [n for n in export.notes if "bundle ids" in n]
    assert len(notes) == 1 and "com.zhiliaoapp.TikTok" in notes[0] and "com.lemon.lvoverseas" not in notes[0]


def test_deputies_get_no_rule_of_any_type() -> None:
    banlist = _macos_list(cdhashes=[CDHASH], team_ids=["ABCDE12345"])
    rules = _rules(renderer("santa")(chosen(banlist, "deputies")).text)
    assert [r for r in rules if r[1] in (CDHASH.lower(), "ABCDE12345", DIGEST)] == []


@pytest.mark.parametrize(("key", "value"), [
    ("team_ids", "2Y8XE5CQ9"), ("team_ids", "2Y8XE5CQ94:x"), ("signing_ids", "com.lemon.lvoverseas"),
    ("signing_ids", "22MMUN2RN5:"), ("signing_ids", "22MMUN2RN5:a b"), ("cdhashes", "0123"), ("cdhashes", "g" * 40),
])
def test_the_list_refuses_identifiers_santa_could_not_match(key: str, value: str) -> None:
    document = {**QUEBEC, "entries": [{**QUEBEC["entries"][0], "match": {key: [value]}}]}
    with pytest.raises(UserError, match=key):
        parse_banlist(json.dumps(document).encode())


def test_the_bundled_list_exports_the_researched_team_ids() -> None:
    from agent.export.common import Provenance, select
    from tests.export_support import NOW

    banlist = parse_banlist((Path(__file__).resolve().parents[2] / "config" / "banlist.example.yaml").read_bytes())
    rules = _rules(renderer("santa")(select(banlist, (), NOW, Provenance(serial=banlist.serial))).text)
    assert {("TEAMID", "2Y8XE5CQ94", "BLOCKLIST"), ("TEAMID", "22MMUN2RN5", "BLOCKLIST")} <= set(rules)
