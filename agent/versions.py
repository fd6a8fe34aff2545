"""Version constraints such as `<35` or `>=2.0,<3`, compared the way each source's tool compares.

A Debian package's version is compared with dpkg's algorithm (`dpkg --compare-versions`), an RPM's
with rpm's (`rpmvercmp`, version then release), because that is what the administrator sees
those tools do, and they disagree with any one generic rule: dpkg and rpm both order `1.0-1`
before `1.0.1` (the revision/release after the last `-` is compared only after the version) and
`1.0A` before `1.0a` (letters compare as ASCII). Everything else — phones, registries, Windows,
macOS, Flatpak, snap — writes free-form strings, so it is compared segment-wise (numbers
numerically, letters case-insensitively, `~` before anything, separators ignored) rather than
by PEP 440, which would reject most of them; there `1.0-1` equals `1.0.1` and `1.0A` equals `1.0a`.
For every scheme an epoch (`1:` in dpkg, rpm and pacman versions) is compared first when the
constraint names one; otherwise the constraint speaks of the upstream version and the app's epoch
is left out. tests/integration/test_version_schemes.py checks both tools' rules against the real
`dpkg --compare-versions` and rpm's own `rpm.vercmp`.
"""

from __future__ import annotations

import operator
import re

from agent.records import dataclass

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Callable

# Patterns as text, compiled by `re` on first use (and cached there): a check whose list has no
# version constraint compares no versions, and compiling the four at import was ~1 % of its start-up.
_TOKEN = r"\d+|[A-Za-z]+|~"
_EPOCH = r"(?s)\s*(\d+):(.*)"
_CLAUSE = r"\s*(<=|>=|==|!=|<|>|=)\s*([0-9A-Za-z][0-9A-Za-z.+~:_-]*)\s*"
_OPS: dict[str, Callable[[object, object], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "=": operator.eq, "!=": operator.ne,
}
Key = tuple[tuple[int, object], ...]
Scheme = str
"""How a source's versions compare: "dpkg", "rpm" or "generic" (agent.sources `version_scheme`)."""


def version_key(version: str) -> Key:
    """Return a sort key: digits beat letters, letters beat the end, the end beats `~`."""
    key: list[tuple[int, object]] = []
    for token in re.findall(_TOKEN, version):
        if token == "~":
            key.append((-1, ""))
        elif token.isdigit():
            key.append((2, int(token)))
        else:
            key.append((1, token.lower()))
    key.append((0, ""))
    return tuple(key)


def _is_digits(text: str) -> bool:
    """ASCII digits only, as the C tools see them (str.isdigit also accepts other scripts')."""
    return bool(text) and all("0" <= char <= "9" for char in text)


def _is_letter(char: str) -> bool:
    return "a" <= char <= "z" or "A" <= char <= "Z"


def _dpkg_order(char: str) -> int:
    """dpkg's weight of one character of the non-digit part: `~` first, then the end of the
    string, then letters, then everything else (all by ASCII)."""
    if char == "~":
        return -1
    if _is_letter(char):
        return ord(char)
    return ord(char) + 256


def _dpkg_part(one: str, two: str) -> int:
    """dpkg's comparison of an upstream version or a revision (lib/dpkg/version.c, verrevcmp):
    alternately the non-digit prefix by _dpkg_order, then the digit run as a number."""
    i = j = 0
    while i < len(one) or j < len(two):
        while (i < len(one) and not _is_digits(one[i])) or (j < len(two) and not _is_digits(two[j])):
            a = _dpkg_order(one[i]) if i < len(one) and not _is_digits(one[i]) else 0
            b = _dpkg_order(two[j]) if j < len(two) and not _is_digits(two[j]) else 0
            if a != b:
                return -1 if a < b else 1
            i, j = i + 1, j + 1
        start_i, start_j = i, j
        while i < len(one) and _is_digits(one[i]):
            i += 1
        while j < len(two) and _is_digits(two[j]):
            j += 1
        a_num, b_num = int(one[start_i:i] or 0), int(two[start_j:j] or 0)
        if a_num != b_num:
            return -1 if a_num < b_num else 1
    return 0


def dpkg_compare(one: str, two: str) -> int:
    """Given two Debian versions without epoch, return -1, 0 or 1 as `dpkg --compare-versions`
    orders them: the upstream version first, then the revision after the last `-`."""
    up_one, _, rev_one = one.rpartition("-") if "-" in one else (one, "", "")
    up_two, _, rev_two = two.rpartition("-") if "-" in two else (two, "", "")
    return _dpkg_part(up_one, up_two) or _dpkg_part(rev_one, rev_two)


_RPM_TOKEN = r"~|\^|[0-9]+|[A-Za-z]+"


def rpmvercmp(one: str, two: str) -> int:
    """rpm's comparison of a version or a release (rpmio/rpmvercmp.c): separators are skipped;
    `~` sorts before everything, even the end; `^` after the end but before anything else; a
    number beats letters; numbers compare numerically, letters as ASCII; more segments win."""
    if one == two:
        return 0
    a, b = _rpm_tokens(one), _rpm_tokens(two)
    for x, y in zip(a, b):
        found = _rpm_token_cmp(x, y)
        if found:
            return found
    if len(a) == len(b):
        return 0
    rest, sign = (b[len(a)], -1) if len(a) < len(b) else (a[len(b)], 1)
    if rest == "~":
        return -sign  # `1.0~rc1` < `1.0`
    return sign  # `1.0^post` and `1.0.1` > `1.0`


def _rpm_tokens(text: str) -> list[str]:
    return re.findall(_RPM_TOKEN, text)


def _rpm_token_cmp(x: str, y: str) -> int:
    for mark in ("~", "^"):
        if x == mark or y == mark:
            return -1 if x == mark else 1
    if _is_digits(x) != _is_digits(y):
        return 1 if _is_digits(x) else -1
    if _is_digits(x):
        x, y = int(x), int(y)  # type: ignore[assignment]
    return -1 if x < y else (1 if x > y else 0)


def rpm_compare(one: str, two: str) -> int:
    """Given two RPM versions without epoch (`version[-release]`), return -1, 0 or 1 as rpm orders
    them: the version by rpmvercmp, then the release; a release only one side has makes it newer."""
    ver_one, _, rel_one = one.rpartition("-") if "-" in one else (one, "", "")
    ver_two, _, rel_two = two.rpartition("-") if "-" in two else (two, "", "")
    found = rpmvercmp(ver_one, ver_two)
    if found or rel_one == rel_two:
        return found
    if not rel_one or not rel_two:
        return 1 if rel_one else -1
    return rpmvercmp(rel_one, rel_two)


def generic_compare(one: str, two: str) -> int:
    """Compare two free-form versions segment-wise (version_key)."""
    a, b = version_key(one), version_key(two)
    return -1 if a < b else (1 if a > b else 0)


COMPARE: dict[Scheme, Callable[[str, str], int]] = {
    "dpkg": dpkg_compare, "rpm": rpm_compare, "generic": generic_compare,
}


def _split_epoch(version: str) -> tuple[int | None, str]:
    """Return (epoch, the rest): `1:2.0-3` gives (1, "2.0-3"), `2.0` gives (None, "2.0")."""
    found = re.fullmatch(_EPOCH, version)
    return (int(found.group(1)), found.group(2)) if found else (None, version)


@dataclass(frozen=True)
class VersionSpec:
    """A parsed constraint: every clause must hold."""

    text: str
    clauses: tuple[tuple[str, int | None, str], ...]
    """(operator, epoch or None when the clause names none, the rest of the bound)."""

    def contains(self, version: str, scheme: Scheme = "generic") -> bool:
        """Return whether `version` satisfies every clause, compared by `scheme`; an unknown
        version (empty, or with no digit at all: `unknown`, `N/A`, `-`) satisfies it.

        Why: an app whose version a source cannot tell must still be reported, or an unreadable
        version field would hide a banned app.
        """
        if not any(char.isdigit() for char in version):
            return True
        epoch, rest = _split_epoch(version)
        compare = COMPARE[scheme]
        return all(
            _OPS[op]((0 if bound_epoch is None else epoch or 0, compare(rest, bound)), (bound_epoch or 0, 0))
            for op, bound_epoch, bound in self.clauses
        )


def parse_spec(text: str) -> VersionSpec:
    """Given `<35` or `>=2.0,<3`, return the VersionSpec. Raise ValueError if malformed."""
    clauses = []
    for part in text.split(","):
        found = re.fullmatch(_CLAUSE, part)
        if not found:
            raise ValueError(f"bad version constraint {part.strip()!r} (expected e.g. <35 or >=2.0,<3)")
        epoch, rest = _split_epoch(found.group(2))
        clauses.append((found.group(1), epoch, rest))
    return VersionSpec(text=text, clauses=tuple(clauses))
