"""agent.report.jsontext must write exactly what json.dumps(indent=2, ensure_ascii=False) writes:
reports and inventories are served and saved in that form, and people diff them."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.report.jsontext import chunks, dumps

LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text())
KEYS = st.one_of(st.text(), st.integers(), st.booleans(), st.none(), st.floats())
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner), st.dictionaries(KEYS, inner)), max_leaves=40)


@settings(max_examples=500)
@given(VALUES)
def test_same_text_as_the_standard_encoder(value: object) -> None:
    assert dumps(value) == json.dumps(value, indent=2, ensure_ascii=False)


@settings(max_examples=300)
@given(VALUES)
def test_the_pieces_join_to_the_same_text(value: object) -> None:
    assert "".join(chunks(value)) == json.dumps(value, indent=2, ensure_ascii=False)


def test_an_inventory_shaped_document() -> None:
    document = {"format": "appban.inventory/v1", "devices": [{"id": "h", "groups": [], "attributes": {}}],
                "apps": [{"id": "vim", "name": "Vim «é»\n\"x\"", "aliases": ["vim:amd64"], "extra": {"arch": "amd64"}},
                         {"id": "bash", "version": "5.2", "pid": 4, "ok": True, "gone": None}],
                "errors": [], "notes": ["a", "b"]}
    assert dumps(document) == json.dumps(document, indent=2, ensure_ascii=False)
    pieces = list(chunks(document))
    assert "".join(pieces) == dumps(document) and len(pieces) > len(document)  # written record by record
