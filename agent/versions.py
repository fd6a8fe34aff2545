"""Version constraints such as `<35` or `>=2.0,<3`, compared the way package managers compare.

Versions from phones, registries and package databases are free-form strings, so comparison is
segment-wise (numbers numerically, letters lexically, `~` before anything, as dpkg and rpm do)
rather than PEP 440, which would reject most of them. An epoch (`1:` in dpkg, rpm and pacman
versions) is compared first when the constraint names one; otherwise the constraint speaks of the
upstream version and the app's epoch is left out.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Callable

_TOKEN = re.compile(r"\d+|[A-Za-z]+|~")
_EPOCH = re.compile(r"\s*(\d+):(.*)", re.DOTALL)
_CLAUSE = re.compile(r"\s*(<=|>=|==|!=|<|>|=)\s*([0-9A-Za-z][0-9A-Za-z.+~:_-]*)\s*")
_OPS: dict[str, Callable[[object, object], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "=": operator.eq, "!=": operator.ne,
}
Key = tuple[tuple[int, object], ...]


def version_key(version: str) -> Key:
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


def _split_epoch(version: str) -> tuple[int | None, str]:
    """Return (epoch, the rest): `1:2.0-3` gives (1, "2.0-3"), `2.0` gives (None, "2.0")."""
    found = _EPOCH.fullmatch(version)
    return (int(found.group(1)), found.group(2)) if found else (None, version)


@dataclass(frozen=True)
class VersionSpec:
    """A parsed constraint: every clause must hold."""

    text: str
    clauses: tuple[tuple[str, int | None, Key], ...]
    """(operator, epoch or None when the clause names none, key of the rest)."""

    def contains(self, version: str) -> bool:
        """Return whether `version` satisfies every clause; an unknown version (empty, or with no
        digit at all: `unknown`, `N/A`, `-`) satisfies it.

        Why: an app whose version a source cannot tell must still be reported, or an unreadable
        version field would hide a banned app.
        """
        if not any(char.isdigit() for char in version):
            return True
        epoch, rest = _split_epoch(version)
        key = version_key(rest)
        return all(
            _OPS[op](key, bound) if bound_epoch is None else _OPS[op]((epoch or 0, key), (bound_epoch, bound))
            for op, bound_epoch, bound in self.clauses
        )


def parse_spec(text: str) -> VersionSpec:
    """Given `<35` or `>=2.0,<3`, return the VersionSpec. Raise ValueError if malformed."""
    clauses = []
    for part in text.split(","):
        found = _CLAUSE.fullmatch(part)
        if not found:
            raise ValueError(f"bad version constraint {part.strip()!r} (expected e.g. <35 or >=2.0,<3)")
        epoch, rest = _split_epoch(found.group(2))
        clauses.append((found.group(1), epoch, version_key(rest)))
    return VersionSpec(text=text, clauses=tuple(clauses))
