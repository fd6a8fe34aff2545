"""Phone ownership on the adb gateway from `cmd device_policy list-owners`, and the privacy rule
for personal phones with a work profile: only the work profile is listed, reported or touched."""

from __future__ import annotations

import pytest

from agent.config import Config, GatewayConfig
from agent.inventory.android import AndroidCollector, Owners, parse_owners, phone_ownership
from agent.inventory.base import Context
from agent.runner import Runner
from tests.phones import FIXTURES, LIST_OWNERS, PIXEL2, SAMSUNG, Reply, android_replies, calls, install


def _collect(tmp_path, replies, default="corporate"):
    log = tmp_path / "calls.log"
    adb = install(tmp_path, "adb", replies, log)
    config = Config(commands={"adb": adb},
                    gateway=GatewayConfig(enabled=True, timeout=1.5, default_ownership=default))
    return AndroidCollector().collect(Context(runner=Runner(commands={"adb": adb}), config=config)), calls(log)


def test_list_owners_output_is_parsed_as_aosp_prints_it():
    assert parse_owners((FIXTURES / "samsung-list-owners.txt").read_text()) == Owners(True, (10,))
    assert parse_owners((FIXTURES / "samsung-list-owners-personal.txt").read_text()) == Owners(False, (10,))
    assert parse_owners((FIXTURES / "no-owners.txt").read_text()) == Owners()
    assert parse_owners((FIXTURES / "pixel2-no-device-policy-command.txt").read_text()) is None
    assert parse_owners("1 owner:\nUser  0: admin=com.x/.R,ProfileOwner\n") == Owners(False, ())
    assert parse_owners("1 owner:\nsomething else\n") is None


@pytest.mark.parametrize(("owners", "default", "expected"), [
    (Owners(True, (10,)), "personal", ("corporate", ())),
    (Owners(False, (10,)), "corporate", ("personal", (10,))),
    (Owners(), "corporate", ("corporate", ())),
    (Owners(False, ()), "unknown", ("unknown", ())),   # a profile owner of a secondary user alone says nothing
    (None, "personal", ("personal", ())),
])
def test_a_device_owner_is_corporate_a_managed_profile_alone_is_personal_else_the_default(owners, default, expected):
    assert phone_ownership(owners, default) == expected


def test_a_company_phone_with_a_work_profile_is_read_whole_and_an_old_android_takes_the_default(tmp_path):
    result, _ = _collect(tmp_path, android_replies(stuck_for=30), default="unknown")
    devices = {d.id: d for d in result.devices}
    assert devices[SAMSUNG].ownership == "corporate" and devices[PIXEL2].ownership == "unknown"
    assert {a.user for a in result.apps if a.device == SAMSUNG} == {"0", "10"}


def test_a_personal_phone_lists_only_its_work_profile_and_the_report_says_the_rest_was_skipped(tmp_path):
    replies = android_replies(stuck_for=30)
    replies[("-s", SAMSUNG, "shell", *LIST_OWNERS)] = Reply("samsung-list-owners-personal.txt")
    result, made = _collect(tmp_path, replies)
    samsung = next(d for d in result.devices if d.id == SAMSUNG)
    assert samsung.ownership == "personal"
    assert {a.user for a in result.apps if a.device == SAMSUNG} == {"10"}
    assert not [c for c in made if SAMSUNG in c and "--user" in c and c[c.index("--user") + 1] == "0"]
    assert (f"{SAMSUNG}: personal phone with a work profile: only the work profile (user 10) was read; "
            "the personal profile (user 0) was skipped") in result.notes
