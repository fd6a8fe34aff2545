"""The one cap's name: `enforcement.max_actions`, with `max_removals` (its old name) still read
with one warning; both names with different values are a config error."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.config import ConfigError, EnforcementConfig, parse_config

TOP = Path(__file__).resolve().parents[2]


def _cap(document: str) -> int:
    return parse_config(document.encode(), "config test.yaml").enforcement.max_actions


@pytest.fixture(autouse=True)
def _propagating(monkeypatch: pytest.MonkeyPatch) -> None:
    """agent.log.configure (run by other tests in this process) stops propagation to caplog's handler."""
    monkeypatch.setattr(logging.getLogger("agent"), "propagate", True)


def _deprecations(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "config.deprecated_key"]


def test_max_actions_is_the_name_and_five_the_default(caplog: pytest.LogCaptureFixture) -> None:
    assert _cap("enforcement:\n  max_actions: 7\n") == 7
    assert _cap("enforcement:\n  mode: block\n") == 5 == EnforcementConfig().max_actions
    assert _deprecations(caplog) == []


def test_the_old_name_is_read_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agent")
    config = parse_config(b"enforcement:\n  mode: block\n  max_removals: 2\n", "config test.yaml").enforcement
    assert (config.max_actions, config.max_removals, config.mode) == (2, 2, "block")
    warned = _deprecations(caplog)
    assert len(warned) == 1
    assert warned[0].levelno == logging.WARNING


def test_both_names_with_one_value_are_read(caplog: pytest.LogCaptureFixture) -> None:
    assert _cap("enforcement:\n  max_removals: 3\n  max_actions: 3\n") == 3


def test_both_names_with_different_values_are_a_config_error_naming_both() -> None:
    with pytest.raises(ConfigError) as caught:
        _cap("enforcement:\n  max_actions: 50\n  max_removals: 0\n")
    message = str(caught.value)
    assert "\n" not in message
    assert "enforcement.max_removals" in message and "enforcement.max_actions" in message
    assert "config test.yaml" in message and "0" in message and "50" in message


@pytest.mark.parametrize("key", ["max_actions", "max_removals"])
def test_a_negative_cap_is_refused_under_either_name(key: str) -> None:
    with pytest.raises(ConfigError, match="max_actions"):
        _cap(f"enforcement:\n  {key}: -1\n")


def test_the_example_config_uses_the_new_name() -> None:
    text = (TOP / "config" / "agent.example.yaml").read_text()
    assert "\n  max_actions: " in text and "\n  max_removals:" not in text
    assert parse_config(text.encode(), "example").enforcement.max_actions == 5
