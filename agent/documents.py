"""Read YAML/JSON documents strictly: the one loader for ban lists, configs and inventories.

PyYAML's safe loader still accepts aliases (a few hundred bytes can expand into gigabytes) and
silently keeps the last of two duplicate keys; neither is acceptable in a document that decides
what is blocked on a fleet, so this loader refuses both and caps the size.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

MAX_BYTES = 16 * 1024 * 1024


class DocumentError(ValueError):
    """A document that cannot be read; the message is one line naming the document."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and duplicate keys: neither has a use in a ban list, and
    aliases are how a small document expands into gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"YAML aliases are not allowed (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # type: ignore[override]
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.YAMLError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_document(data: bytes, what: str) -> Any:
    """Given the bytes of a YAML or JSON document, return the parsed object.

    Raise DocumentError (one line, naming `what`) for oversized, non-UTF-8 or malformed input.
    """
    if len(data) > MAX_BYTES:
        raise DocumentError(f"{what}: document is {len(data)} bytes, over the {MAX_BYTES}-byte limit")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{what}: not UTF-8 text (byte {exc.start})") from None
    try:
        if text.lstrip().startswith("{"):
            return json.loads(text, object_pairs_hook=_no_duplicate_keys)
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise DocumentError(f"{what}: not valid YAML or JSON: {_one_line(exc)}") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
