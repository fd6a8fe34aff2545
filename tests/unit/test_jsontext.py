"""agent.report.jsontext must write exactly what json.dumps(indent=2, ensure_ascii=False) writes:
reports and inventories are served and saved in that form, and people diff them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.report.jsontext import chunks, dumps, encode_document

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


PLAIN_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.text())
PLAIN = st.recursive(PLAIN_LEAVES, lambda inner: st.one_of(st.lists(inner), st.dictionaries(st.text(), inner)),
                     max_leaves=40)


def _standard_bytes(value: object) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False).encode()


@settings(max_examples=500)
@given(PLAIN)
def test_documents_get_the_same_bytes_through_msgspec(value: object) -> None:
    """What the records' to_dict build (no floats, string keys) is written as json writes it."""
    try:
        expected = _standard_bytes(value)
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 for it either way
        with pytest.raises(UnicodeEncodeError):
            encode_document(value)
        return
    assert encode_document(value) == expected


def test_what_msgspec_cannot_encode_goes_to_the_standard_path() -> None:
    document = {"keys": {1: "one", None: "none"}, "huge": 2**200}
    assert encode_document(document) == _standard_bytes(document)
