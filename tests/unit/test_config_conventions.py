"""What a new administrator writes in agent.yaml and a list author in a ban list: YAML's unquoted
on/off, a zero splay, and typos — each understood, or refused with a line that says what to write."""

from __future__ import annotations

import pytest

from agent.banlist.parse import BanListError, parse_banlist
from agent.config import ConfigError, interval_seconds, parse_config


@pytest.mark.parametrize("written", ["off", "no", "false", '"off"'])
def test_guard_off_unquoted_is_understood(written: str) -> None:
    assert parse_config(f"enforcement: {{guard: {written}}}".encode(), "config t").enforcement.guard == "off"


def test_a_yaml_boolean_with_no_matching_choice_is_refused_with_a_hint_to_quote() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(b"enforcement: {mode: yes}", "config t")
    assert str(caught.value) == (
        "config t: key 'enforcement.mode': expected one of report, block, got the YAML boolean true "
        '(unquoted on/off/yes/no read as true/false: quote the value, e.g. "report")')


def test_a_zero_splay_means_none_but_a_zero_interval_is_still_refused() -> None:
    assert parse_config(b"schedule: {splay: 0s}", "config t").schedule.splay == "0s"
    assert interval_seconds("0", allow_zero=True) == 0.0
    with pytest.raises(ConfigError, match="schedule.scan': bad interval '0s'"):
        parse_config(b"schedule: {scan: 0s}", "config t")


@pytest.mark.parametrize(("document", "suggestion"), [
    (b"schedul: {scan: 1h}", "key 'schedul': unknown key (did you mean 'schedule'?)"),
    (b"enforcement: {mdoe: block}", "key 'enforcement.mdoe': unknown key (did you mean 'mode'?)"),
    (b"push: {urll: x}", "(did you mean 'url'?)"),
])
def test_an_unknown_config_key_suggests_the_nearest(document: bytes, suggestion: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(document, "config t")
    assert suggestion in str(caught.value)


def test_an_unrelated_key_gets_no_guess() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(b"zzzzzz: 1", "config t")
    assert str(caught.value) == "config t: key 'zzzzzz': unknown key"


def test_a_ban_list_typo_suggests_too() -> None:
    with pytest.raises(BanListError, match=r"field 'match.androids': unknown key \(did you mean 'android'\?\)"):
        parse_banlist(b"format: appban.banlist/v1\nserial: 1\nissued: 2026-01-01\n"
                      b"entries: [{id: x, name: X, match: {androids: [a]}}]")
