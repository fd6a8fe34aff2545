"""Version constraints against version strings as real package databases write them."""

from __future__ import annotations

import pytest

from agent.versions import parse_spec


@pytest.mark.parametrize(
    ("spec", "version", "hit"),
    [
        # dpkg, rpm and pacman write an epoch before the colon (vlc is 3:3.0.20-… in Debian): a
        # constraint without one speaks of the upstream version, so the epoch must not count as
        # a first version segment.
        (">=30", "1:34.0-1", True),
        ("<35", "1:40.0-1", False),
        ("<35", "2:34.9-1ubuntu1", True),
        (">=3.0.18", "3:3.0.10-1", False),
        # a constraint that names an epoch compares it first, as dpkg and rpm do
        (">=2:1.0", "1:5.0", False),
        (">=2:1.0", "2:1.0", True),
        (">=2:1.0", "3:0.1", True),
        (">=1:1.0", "5.0", False),
        # the usual shapes without an epoch still compare segment-wise
        ("<35", "34.9.1", True),
        ("<35", "35.0.0.12", False),
        (">=2.0,<3", "2.10", True),
        ("<1.0", "1.0~rc1", True),
    ],
)
def test_contains(spec, version, hit):
    assert parse_spec(spec).contains(version) is hit


@pytest.mark.parametrize("version", ["", "  ", "unknown", "N/A", "-", "latest"])
def test_a_version_with_no_number_is_unknown_and_matches(version):
    """Registries and exports write placeholders for a version they do not know; like an empty
    one, such a version must not hide a banned app behind a `>=` constraint."""
    assert parse_spec(">=2.0").contains(version) is True
    assert parse_spec("<35").contains(version) is True


@pytest.mark.parametrize(("one", "two", "dpkg", "rpm", "generic"), [
    # the pairs where the tools and the generic rule part ways (checked against the real tools in
    # tests/integration/test_version_schemes.py)
    ("1.0-1", "1.0.1", -1, -1, 0),
    ("1.2.3-4", "1.2.3.4", -1, -1, 0),
    ("1.0A", "1.0a", -1, -1, 0),
    ("1.0~rc1", "1.0", -1, -1, -1),
    ("2.0-3", "2.0", 1, 1, 1),
    ("1.0+b1", "1.0", 1, 1, 1),
    ("1.a", "1.1", 1, -1, -1),  # dpkg: letters after the end of digits; rpm: a number beats letters
    ("1.0.0", "1.0+0", 1, 0, 0),  # dpkg weighs `+` over `.`; rpm skips separators
    ("1.0^git1", "1.0", 1, 1, 1),
])
def test_each_scheme_orders_as_its_tool(one: str, two: str, dpkg: int, rpm: int, generic: int) -> None:
    from agent.versions import dpkg_compare, generic_compare, rpm_compare

    assert (dpkg_compare(one, two), rpm_compare(one, two), generic_compare(one, two)) == (dpkg, rpm, generic)
    assert (dpkg_compare(two, one), rpm_compare(two, one)) == (-dpkg, -rpm)


def test_a_constraint_follows_the_source_scheme() -> None:
    spec = parse_spec("<1.0.1")
    assert spec.contains("1.0-1", "dpkg") and spec.contains("1.0-1", "rpm")
    assert not spec.contains("1.0-1", "generic")  # free-form: 1.0-1 reads as 1.0.1
    assert parse_spec(">=1:1.0").contains("1:1.0-1", "dpkg") and not parse_spec(">=2:0").contains("1:9", "rpm")
