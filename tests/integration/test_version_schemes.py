"""appban's dpkg and rpm version comparisons against the real tools: `dpkg --compare-versions`
and rpm's own `rpm.vercmp` (rpm's Lua interface to rpmverCmp, through `rpm --eval`), on the pairs
where the rules differ and on random versions (hypothesis) made of what package versions hold."""

from __future__ import annotations

import subprocess

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from agent.versions import dpkg_compare, rpm_compare
from tests.conftest import require_tool

PAIRS = [("1.0-1", "1.0.1"), ("1.2.3-4", "1.2.3.4"), ("1.0A", "1.0a"), ("1.0~rc1", "1.0"),
         ("2.0-3", "2.0"), ("1.a", "1.1"), ("1.0.0", "1.0+0"), ("1.01", "1.1"), ("1.0-1ubuntu1", "1.0-1"),
         ("3.0.20-1~deb12u1", "3.0.20-1"), ("10.0", "9.9"), ("1.0-1.fc39", "1.0-1.el9")]

# what Debian policy allows: upstream starts with a digit; `-` only as the revision separator
_UPSTREAM = st.from_regex(r"[0-9][0-9A-Za-z.+~]{0,7}", fullmatch=True)
_REVISION = st.from_regex(r"[0-9A-Za-z.+~]{1,5}", fullmatch=True)
VERSION = st.tuples(_UPSTREAM, st.none() | _REVISION).map(lambda p: p[0] + (f"-{p[1]}" if p[1] else ""))
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]
"""Each example runs the real tool: shrinking a failure could take minutes; the failing pair as
found is shown anyway."""


def dpkg_says(one: str, two: str) -> int:
    dpkg = require_tool("dpkg")
    for op, result in (("lt", -1), ("eq", 0)):
        if subprocess.run([dpkg, "--compare-versions", one, op, two], capture_output=True, timeout=30).returncode == 0:
            return result
    return 1


def rpm_says(pairs: list[tuple[str, str]]) -> list[int]:
    """Ask rpm once for many pairs (one `rpm --eval` start-up, not one per pair)."""
    rpm = require_tool("rpm")
    calls = " ".join(f"print(rpm.vercmp('{a}', '{b}') .. ' ')" for a, b in pairs)
    done = subprocess.run([rpm, "--eval", f"%{{lua: {calls}}}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [int(value) for value in done.stdout.split()]


def test_the_named_pairs_order_as_dpkg_does() -> None:
    assert [dpkg_compare(a, b) for a, b in PAIRS] == [dpkg_says(a, b) for a, b in PAIRS]


def test_the_named_pairs_order_as_rpm_does() -> None:
    assert [rpm_compare(a, b) for a, b in PAIRS] == rpm_says(PAIRS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], phases=NO_SHRINK)
@given(VERSION, VERSION)
def test_random_versions_order_as_dpkg_does(one: str, two: str) -> None:
    assert dpkg_compare(one, two) == dpkg_says(one, two)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], phases=NO_SHRINK)
@given(st.lists(st.tuples(VERSION, VERSION), min_size=20, max_size=20))
def test_random_versions_order_as_rpm_does(pairs: list[tuple[str, str]]) -> None:
    assert [rpm_compare(a, b) for a, b in pairs] == rpm_says(pairs)
