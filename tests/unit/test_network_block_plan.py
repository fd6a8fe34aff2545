"""On-device network blocking, the pure part: the managed block in a hosts file (every other line
kept, the file restored exactly once nothing is banned) and the plan (cap, foreign drop-ins)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import Config, EnforcementConfig
from agent.enforce.network import (
    BEGIN, DROPIN_HEADER, END, Blocked, NetworkBlockError, blocked_lines, cap_reason, plan_network, with_hosts_block,
)
from agent.enforce.plan import TOO_MANY
from agent.model import App, Device, Finding
from tests.export_support import NOW, QUEBEC, quebec, with_exceptions

HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n# office printer\n10.0.0.5 printer.corp\n"
LINES = ["0.0.0.0 tiktokv.com", ":: tiktokv.com"]


def config(network: str = "hosts", mode: str = "block", **more: object) -> Config:
    return Config(enforcement=EnforcementConfig(mode=mode, network=network, root="/srv/image", **more))


def blocking_list():
    entry = {**QUEBEC["entries"][0], "action": "block"}
    return quebec(entries=[entry])


def test_the_block_is_appended_and_every_other_line_kept() -> None:
    text = with_hosts_block(HOSTS, LINES, 42)
    assert text.startswith(HOSTS)
    assert text[len(HOSTS):] == f"{BEGIN}\n# ban list serial 42\n0.0.0.0 tiktokv.com\n:: tiktokv.com\n{END}\n"


def test_a_new_list_replaces_only_the_block_and_no_ban_restores_the_file() -> None:
    first = with_hosts_block(HOSTS, LINES, 42)
    edited = first + "192.0.2.7 added-later.corp\n"
    second = with_hosts_block(edited, ["0.0.0.0 wechat.com"], 43)
    assert "tiktokv.com" not in second and "0.0.0.0 wechat.com" in second
    assert "192.0.2.7 added-later.corp\n" in second and second.startswith(HOSTS)
    assert with_hosts_block(second, [], 44) == HOSTS + "192.0.2.7 added-later.corp\n"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=200))
def test_any_hosts_file_comes_back_exactly(original: str) -> None:
    if BEGIN in original or END in original:
        return
    assert with_hosts_block(with_hosts_block(original, LINES, 1), [], 2) == original


def test_a_damaged_block_is_refused_rather_than_guessed_at() -> None:
    with pytest.raises(NetworkBlockError, match="not closed"):
        with_hosts_block(HOSTS + BEGIN + "\n0.0.0.0 x.com\n", LINES, 1)


def test_lines_come_from_the_guard_entries_only() -> None:
    staff = Device(id="pc-1", groups=("staff",))
    blocked = blocked_lines(blocking_list(), staff, config(), NOW)
    assert (blocked.names, blocked.entries) == (3, 1) and "0.0.0.0 tiktokv.com" in blocked.lines
    assert blocked_lines(quebec(), staff, config(), NOW) == Blocked(), "action report never blocks"
    assert blocked_lines(blocking_list(), Device(id="pc-2", groups=("deputies",)), config(), NOW) == Blocked()
    assert blocked_lines(blocking_list(), staff, config(mode="report"), NOW) == Blocked()
    excepted = with_exceptions({"devices": ["pc-1"]})
    excepted = dataclasses.replace(excepted, entries=blocking_list().entries)
    assert blocked_lines(excepted, staff, config(), NOW) == Blocked()
    unbound = blocked_lines(blocking_list(), staff, config("unbound"), NOW).lines
    assert unbound[0] == "server:" and '    local-zone: "tiktokv.com." always_nxdomain' in unbound


def test_the_plan_is_refused_when_the_run_hits_the_cap() -> None:
    entry = blocking_list().entries[0]
    app = App(source="dpkg", id="tiktok")
    capped = [Finding("violation", entry, app, "pc-1", "deb:tiktok", outcome="removed"),
              Finding("violation", entry, app, "pc-1", "deb:tiktok",
                      outcome=f"refused: {TOO_MANY} (9 removals, max_actions is 5)")]
    reason = cap_reason(capped)
    assert reason == f"{TOO_MANY} (9 removals, max_actions is 5)"
    assert cap_reason(capped[:1]) == "" and cap_reason([]) == ""
    change = plan_network(config(), HOSTS, Blocked(tuple(LINES), 1, 1), 42, reason)
    assert change is not None and change.refused == reason and "refused" in change.describe()
    assert plan_network(config(), HOSTS, Blocked(tuple(LINES), 1, 1), 42).refused == ""


def test_network_none_plans_nothing_and_an_up_to_date_file_is_unchanged() -> None:
    assert plan_network(config("none"), HOSTS, Blocked(tuple(LINES), 1, 1), 42) is None
    assert plan_network(config(), HOSTS, Blocked(), 42).unchanged
    assert plan_network(config(), None, Blocked(), 42).unchanged


def test_drop_ins_are_written_whole_removed_when_empty_and_never_taken_over() -> None:
    change = plan_network(config("dnsmasq"), None, Blocked(("address=/tiktokv.com/#",), 1, 1), 42)
    assert change.path == "/srv/image/etc/dnsmasq.d/appban.conf"
    assert change.text == DROPIN_HEADER + "# ban list serial 42\naddress=/tiktokv.com/#\n"
    removal = plan_network(config("dnsmasq"), change.text, Blocked(), 43)
    assert removal.text is None and "remove" in removal.describe()
    with pytest.raises(NetworkBlockError, match="not written by appban"):
        plan_network(config("unbound"), "server:\n  verbosity: 1\n", Blocked(("server:",), 0, 1), 42)
    custom = plan_network(config("unbound", network_file="/etc/unbound/local.d/ban.conf"), None, Blocked(("server:",), 0, 1), 1)
    assert custom.path == "/srv/image/etc/unbound/local.d/ban.conf"


def test_more_banned_services_than_the_cap_allows_are_refused_whole() -> None:
    many = Blocked(tuple(f"0.0.0.0 s{n}.example" for n in range(6)), 6, 6)
    change = plan_network(config(max_actions=5), HOSTS, many, 42)
    assert change.refused.startswith(TOO_MANY) and "6 dns-block entry" in change.refused
    assert plan_network(config(max_actions=6), HOSTS, many, 42).refused == ""
