"""`Literal` for the records' annotations, without importing typing.

The records' annotations are strings (`from __future__ import annotations`), resolved only when
a document is read into records (agent.schema) or a typed decoder is derived (agent.wire): then
`Literal["a", "b"]` must give typing's Literal. Importing typing costs ~14 M instructions, a
twentieth of a check that resolves no annotation (issue 14), so the modules on a check's path
import typing only for type checkers, and bind this `Literal`, which hands its subscript to
typing's when an annotation is resolved: `typing.get_type_hints` and `agent.schema.type_hints`
give exactly what they gave with typing's own name.
"""

from __future__ import annotations


class _Literal:
    """Subscripted, typing.Literal of the same values (typing is imported then)."""

    __slots__ = ()

    def __getitem__(self, values: object) -> object:
        import typing

        return typing.Literal[values]

    def __repr__(self) -> str:
        return "typing.Literal (imported when subscripted)"


Literal = _Literal()
