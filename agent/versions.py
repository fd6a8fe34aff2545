"""Version constraints such as `<35` or `>=2.0,<3`, compared the way package managers compare.

Versions from phones, registries and package databases are free-form strings, so comparison is
segment-wise (numbers numerically, letters lexically, `~` before anything, as dpkg and rpm do)
rather than PEP 440, which would reject most of them.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Callable

_TOKEN = re.compile(r"\d+|[A-Za-z]+|~")
_CLAUSE = re.compile(r"\s*(<=|>=|==|!=|<|>|=)\s*([0-9A-Za-z][0-9A-Za-z.+~:_-]*)\s*")
_OPS: dict[str, Callable[[object, object], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "=": operator.eq, "!=": operator.ne,
}


def version_key(version: str) -> tuple[tuple[int, object], ...]:
    """Return a sort key: digits beat letters, letters beat the end, the end beats `~`."""
    key: list[tuple[int, object]] = []
    for token in _TOKEN.findall(version):
        if token == "~":
            key.append((-1, ""))
        elif token.isdigit():
            key.append((2, int(token)))
        else:
            key.append((1, token.lower()))
    key.append((0, ""))
    return tuple(key)


@dataclass(frozen=True)
class VersionSpec:
    """A parsed constraint: every clause must hold."""

    text: str
    clauses: tuple[tuple[str, tuple[tuple[int, object], ...]], ...]

    def contains(self, version: str) -> bool:
        """Return whether `version` satisfies every clause; an unknown ("") version satisfies it.

        Why: an app whose version a source cannot tell must still be reported, or an unreadable
        version field would hide a banned app.
        """
        if not version.strip():
            return True
        key = version_key(version)
        return all(_OPS[op](key, bound) for op, bound in self.clauses)


def parse_spec(text: str) -> VersionSpec:
    """Given `<35` or `>=2.0,<3`, return the VersionSpec. Raise ValueError if malformed."""
    clauses = []
    for part in text.split(","):
        found = _CLAUSE.fullmatch(part)
        if not found:
            raise ValueError(f"bad version constraint {part.strip()!r} (expected e.g. <35 or >=2.0,<3)")
        clauses.append((found.group(1), version_key(found.group(2))))
    return VersionSpec(text=text, clauses=tuple(clauses))
