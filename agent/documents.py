"""Read YAML/JSON documents strictly: the one loader for ban lists, configs and inventories.

PyYAML's safe loader still accepts aliases (a few hundred bytes can expand into gigabytes) and
silently keeps the last of two duplicate keys; neither is acceptable in a document that decides
what is blocked on a fleet, so this loader refuses both and caps the size.
"""

from __future__ import annotations

import functools

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Any

MAX_BYTES = 16 * 1024 * 1024


class DocumentError(ValueError):
    """A document that cannot be read; the message is one line naming the document."""


@functools.cache
def _strict_loader() -> type:
    """Return a safe loader class that refuses duplicate keys (PyYAML silently keeps the last one).

    Built on first use: PyYAML costs ~9 ms to import, more than the rest of a JSON check's parsing,
    so a JSON document (the bundled list, a published list, a saved inventory) never loads it."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it: ~20x faster

    class StrictLoader(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # type: ignore[override]
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.YAMLError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def _refuse_aliases(root: Any) -> None:
    """Raise if any node is reached twice: that is an alias, and aliases are how a few hundred
    bytes expand into gigabytes (the "billion laughs"). The walk visits each node once, so the
    check itself cannot be made to explode."""
    import yaml

    seen: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            raise yaml.YAMLError(f"YAML aliases are not allowed (line {node.start_mark.line + 1})")
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in node.value for part in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _load_yaml(text: str) -> Any:
    """Return the parsed YAML document. Raise ValueError with PyYAML's message if it is not valid."""
    import yaml

    loader = _strict_loader()(text)
    try:
        root = loader.get_single_node()
        _refuse_aliases(root)
        return None if root is None else loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None
    finally:
        loader.dispose()


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
            return _load_json_or_flow_yaml(text)
        return _load_yaml(text)
    except (ValueError, TypeError, RecursionError) as exc:
        raise DocumentError(f"{what}: not valid YAML or JSON: {_one_line(exc)}") from None


def _load_json_or_flow_yaml(text: str) -> Any:
    """JSON first (much faster than YAML for a large list); `{key: value}` is not JSON but is
    valid YAML, so a document JSON cannot decode is read as YAML before it is refused, with the
    JSON error (a document that starts with `{` was most likely meant as JSON). json is imported
    here: a check of the bundled list with no config file reads no document."""
    import json

    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as json_error:
        try:
            return _load_yaml(text)
        except (ValueError, TypeError, RecursionError):
            raise json_error from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Return the object of a JSON object's pairs; raise ValueError naming the first key it
    repeats. The dict is built in one call and the pairs walked only when it came out shorter
    (a 10,000-entry ban list has 20,000 objects)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
