"""agent.log.Repeats: a failure that repeats every cycle is logged the first time, then once per
period with how often it happened; another failure, or the same after clear(), at once."""

from __future__ import annotations

import logging

import pytest

from agent.log import Repeats

logger = logging.getLogger("agent.test_repeats")


def test_a_repeated_failure_is_logged_once_per_period_with_its_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    repeats = Repeats(3600, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="agent.test_repeats")
    logged = []
    for minute in range(0, 130, 5):  # a push cycle every 5 minutes for over two hours
        now[0] = minute * 60.0
        logged.append(repeats.log(logger, logging.WARNING, "push.enroll_failed", "HTTP 409", error="HTTP 409"))
    assert [m for m, was in zip(range(0, 130, 5), logged) if was] == [0, 60, 120]
    counts = [getattr(r, "appban_fields").get("repeated") for r in caplog.records]
    assert counts == [None, 12, 12]  # the first line, then each hour's 12 cycles

    now[0] += 60
    assert repeats.log(logger, logging.WARNING, "push.enroll_failed", "unreachable", error="unreachable")
    assert not repeats.log(logger, logging.WARNING, "push.enroll_failed", "unreachable", error="unreachable")
    repeats.clear()  # it worked: the next failure is news again
    assert repeats.log(logger, logging.WARNING, "push.enroll_failed", "unreachable", error="unreachable")
    assert "repeated" not in getattr(caplog.records[-1], "appban_fields")
