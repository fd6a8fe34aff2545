"""agent.ids.random_id makes the text of a version 4 UUID without importing uuid (issue 14)."""

from __future__ import annotations

import uuid

from agent.ids import random_id


def test_a_random_id_is_a_version_4_rfc_4122_uuid_in_its_usual_text() -> None:
    made = [random_id() for _ in range(2000)]
    for text in made:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert len(set(made)) == len(made)


def test_the_random_bits_are_all_used() -> None:
    """Every hex digit outside the version and variant digits takes many values over many ids."""
    made = [random_id().replace("-", "") for _ in range(2000)]
    for position in range(32):
        digits = {text[position] for text in made}
        if position == 12:
            assert digits == {"4"}
        elif position == 16:
            assert digits == set("89ab")
        else:
            assert len(digits) == 16, position
