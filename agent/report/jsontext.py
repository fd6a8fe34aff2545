"""Indented JSON from the C encoder: the same text as `json.dumps(value, indent=2,
ensure_ascii=False)`, several times faster on reports and inventories.

Why: Python's C encoder is only used without `indent`; with it, every value goes through the
pure-Python encoder (3x slower on a 100,000-app inventory). Reports and inventories are mostly
flat records (an app: a dict of strings), and a flat record in indented form is exactly the C
encoder's output with the newline and indentation as its item separator. So containers are
walked here, flat ones are encoded in C, and anything unusual (a non-string key, a type JSON has
no spelling for) goes to the standard encoder, whose output is re-indented to its depth.
"""

from __future__ import annotations

import functools
import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Callable, Iterator

INDENT = "  "
_LEAVES = (str, int, float, bool, type(None))
_compact = json.JSONEncoder(ensure_ascii=False).encode  # C-accelerated (no indent), for scalars and keys


def dumps(value: Any) -> str:
    """Return `value` as JSON, byte for byte what json.dumps(value, indent=2, ensure_ascii=False) gives."""
    return _encode(value, 0)


def encode_document(document: Any) -> bytes:
    """Return one of appban's documents (a report, an inventory: what the records' `to_dict`
    build) as the UTF-8 of `dumps`, encoded by msgspec when it is installed: 8x faster on a
    100,000-app inventory, where `dumps` still walks every record in Python. Bytes, not text:
    at that size each further 30 MB copy (decode, then encode again for stdout) costs as much
    as a third of the encoding.

    Only for documents of strings, integers, booleans, null, lists and objects keyed by strings,
    which is all those records hold: for these msgspec writes the same text (the same escapes,
    raw UTF-8, `[]` and `{}`; tests/unit/test_jsontext.py), but it spells a float's exponent
    `1e100` where json writes `1e+100`, writes NaN as null, and encodes datetimes and bytes that
    json refuses. Whatever msgspec cannot encode (a lone surrogate, a key of another type) goes
    to `dumps`."""
    try:
        import msgspec
    except ImportError:
        return dumps(document).encode()
    try:
        return msgspec.json.format(msgspec.json.encode(document), indent=len(INDENT))
    except (TypeError, ValueError, OverflowError):  # UnicodeEncodeError is a ValueError
        return dumps(document).encode()


def chunks(value: Any) -> Iterator[str]:
    """Yield the text of `dumps(value)` in pieces: a dict's members one at a time and the items
    of its lists one at a time, so a report of 20,000 devices and findings is written out
    without its whole text (tens of MiB) ever being in memory at once."""
    if type(value) is not dict or not value or any(type(key) is not str for key in value) or all(
            type(item) in _LEAVES for item in value.values()):
        yield _encode(value, 0)  # what is not a non-flat dict of str keys is written as dumps writes it
        return
    inner = _newline(1)
    yield "{"
    for number, (key, item) in enumerate(value.items()):
        yield f"{',' if number else ''}{inner}{encode_basestring(key)}: "
        if type(item) is list and item and not all(type(x) in _LEAVES for x in item):
            items = _newline(2)
            yield "["
            for position, element in enumerate(item):
                yield f"{',' if position else ''}{items}{_encode(element, 2)}"
            yield inner + "]"
        else:
            yield _encode(item, 1)
    yield _newline(0) + "}"


@functools.cache
def _flat_encoder(level: int) -> Callable[[Any], str]:
    """The C encoder whose item separator starts a new line at `level`'s indentation, made once
    (JSONEncoder.encode builds a new one on every call, which costs more than a small record)."""
    if c_make_encoder is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(ensure_ascii=False, separators=("," + _newline(level), ": ")).encode
    encode = c_make_encoder(None, json.JSONEncoder().default, encode_basestring, None, ": ",
                            "," + _newline(level), False, False, True)
    return lambda value: "".join(encode(value, 0))


@functools.cache
def _newline(level: int) -> str:
    return "\n" + INDENT * level


def _encode(value: Any, level: int) -> str:
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is dict and value:
        flat = True
        for key, item in value.items():
            if type(key) is not str:
                return _standard(value, level)
            if flat and type(item) not in _LEAVES:
                flat = False
        inner = _newline(level + 1)
        if flat:
            body = _flat_encoder(level + 1)(value)[1:-1]
        else:
            body = ("," + inner).join([
                f"{encode_basestring(key)}: "
                f"{encode_basestring(item) if type(item) is str else _encode(item, level + 1)}"
                for key, item in value.items()])
        return "{" + inner + body + _newline(level) + "}"
    if kind is list and value:
        inner = _newline(level + 1)
        if all(type(item) in _LEAVES for item in value):
            body = _flat_encoder(level + 1)(value)[1:-1]
        else:
            body = ("," + inner).join([_encode(item, level + 1) for item in value])
        return "[" + inner + body + _newline(level) + "]"
    if kind in _LEAVES or kind in (dict, list):  # other scalars, {} and []
        return _compact(value)
    return _standard(value, level)


def _standard(value: Any, level: int) -> str:
    """The standard encoder's text for `value`, indented to `level` (JSON strings hold no raw
    newline, so every newline in the text is one the encoder put between items)."""
    return json.dumps(value, indent=len(INDENT), ensure_ascii=False).replace("\n", _newline(level))
