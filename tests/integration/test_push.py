"""Pushing the outbox to a real HTTPS receiver on 127.0.0.1 that requires a client certificate
and a bearer token: order kept, nothing lost while the receiver is down or failing."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.banlist.fetch import make_session
from agent.commands.status import gather_status, render_status
from agent.config import PushConfig
from agent.report.outbox import Outbox
from agent.report.push import push_pending
from tests.banlist_fixtures import direct  # noqa: F401 - a fixture used by name
from tests.banlist_servers import make_pki
from tests.service_support import PUSH_TOKEN, Receiver


@pytest.fixture
def setup(tmp_path: Path, direct):
    pki = make_pki(tmp_path / "pki")
    receiver = Receiver(pki)
    outbox = Outbox(tmp_path, max_queue=10)
    for n in range(3):
        outbox.put(f"report-{n}", f'{{"id": "report-{n}"}}'.encode())
    config = PushConfig(url=receiver.url, ca_bundle=str(pki.ca), client_cert=str(pki.client_cert),
                        client_key=str(pki.client_key), timeout=30.0)  # a limit for a hang only
    with make_session(config) as session:
        yield receiver, outbox, config, session
    receiver.stop()
    outbox.close()


def test_down_then_failing_then_up(setup) -> None:
    receiver, outbox, config, session = setup
    down = push_pending(outbox, config, PUSH_TOKEN, session)
    assert down.sent == 0 and down.remaining == 3 and "Connection" in down.error

    receiver.status = 503
    receiver.start()
    failing = push_pending(outbox, config, PUSH_TOKEN, session)
    assert failing == type(failing)(sent=0, remaining=3, error="HTTP 503")

    receiver.status = 200
    done = push_pending(outbox, config, PUSH_TOKEN, session)
    assert (done.sent, done.remaining, done.error) == (3, 0, "")
    assert receiver.deliveries == [(f"report-{n}", f"report-{n}") for n in range(3)]
    assert outbox.depth() == 0


def test_wrong_token_keeps_everything(setup) -> None:
    receiver, outbox, config, session = setup
    receiver.start()
    result = push_pending(outbox, config, "not-the-token", session)
    assert result.error == "HTTP 401" and outbox.depth() == 3 and not receiver.deliveries


def test_untrusted_server_certificate_is_refused(setup) -> None:
    receiver, outbox, config, session = setup
    receiver.start()
    untrusting = PushConfig(url=config.url, client_cert=config.client_cert, client_key=config.client_key)
    with make_session(untrusting) as system_cas:
        result = push_pending(outbox, untrusting, PUSH_TOKEN, system_cas)
    assert "SSLError" in result.error and outbox.depth() == 3 and not receiver.deliveries


def test_missing_client_certificate_is_refused_by_the_receiver(setup) -> None:
    receiver, outbox, config, session = setup
    receiver.start()
    no_client_cert = PushConfig(url=config.url, ca_bundle=config.ca_bundle)
    with make_session(no_client_cert) as anonymous:
        result = push_pending(outbox, no_client_cert, PUSH_TOKEN, anonymous)
    assert result.error and outbox.depth() == 3 and not receiver.deliveries


def test_a_report_refused_for_good_is_dead_lettered_and_the_rest_go_on(setup, tmp_path) -> None:
    receiver, outbox, config, session = setup
    receiver.answers = {"report-1": 422}
    receiver.start()
    result = push_pending(outbox, config, PUSH_TOKEN, session)
    assert (result.sent, result.remaining, result.dead_lettered, result.error) == (2, 0, 1, "")
    assert receiver.deliveries == [("report-0", "report-0"), ("report-2", "report-2")]
    assert outbox.dead_letters() == [("report-1", 422, "HTTP 422")] and outbox.dead_lettered() == 1
    outbox.put("report-3", b'{"id": "report-3"}')
    assert push_pending(outbox, config, PUSH_TOKEN, session).sent == 1  # nothing blocks the queue
    status = gather_status(tmp_path, 10)
    assert status["dead_lettered"] == 1
    assert "0 queued, 0 dropped, 1 dead-lettered" in render_status(status)


@pytest.mark.parametrize("status", [401, 404, 408, 410])
def test_answers_about_the_endpoint_keep_every_report(setup, status) -> None:
    receiver, outbox, config, session = setup
    receiver.status = status
    receiver.start()
    result = push_pending(outbox, config, PUSH_TOKEN, session)
    assert (result.sent, result.remaining, result.dead_lettered) == (0, 3, 0)
    assert outbox.dead_lettered() == 0


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_delivered(setup, status) -> None:
    receiver, outbox, config, session = setup
    receiver.status = status
    receiver.headers = {"Location": receiver.url.replace("/v1/reports", "/elsewhere")}
    receiver.start()
    result = push_pending(outbox, config, PUSH_TOKEN, session)
    assert (result.sent, result.remaining) == (0, 3) and result.error.startswith(f"HTTP {status} (a redirect")
    assert outbox.depth() == 3 and not receiver.deliveries


@pytest.mark.parametrize(("status", "retry_after"), [(429, "120"), (503, "Tue, 01 Dec 2026 12:02:00 GMT")])
def test_retry_after_is_honoured(setup, status, retry_after) -> None:
    receiver, outbox, config, session = setup
    now = 1_796_126_400.0  # 2026-12-01T12:00:00Z
    receiver.status = status
    receiver.headers = {"Retry-After": retry_after}
    receiver.start()
    busy = push_pending(outbox, config, PUSH_TOKEN, session, clock=lambda: now)
    assert "retrying after 120s" in busy.error and busy.remaining == 3
    receiver.status = 200
    early = push_pending(outbox, config, PUSH_TOKEN, session, clock=lambda: now + 60)
    assert early.sent == 0 and "Retry-After" in early.error and not receiver.deliveries
    late = push_pending(outbox, config, PUSH_TOKEN, session, clock=lambda: now + 125)
    assert late.sent == 3


def _cut_at_two_seconds(outbox: Outbox, url: str, **tls: str) -> None:
    """Queue one report and push it to a receiver that trickles: cut at the deadline, kept queued."""
    outbox.put("report-0", b'{"id": "report-0"}')
    config = PushConfig(url=url, timeout=5.0, deadline=2.0, **tls)
    with make_session(config) as session:
        result = push_pending(outbox, config, PUSH_TOKEN, session)
    assert "took longer than the 2s deadline" in result.error and outbox.depth() == 1


def test_a_receiver_trickling_its_answer_is_cut_off_at_the_deadline(tmp_path, direct) -> None:  # noqa: F811 - fixture
    from tests.banlist_servers import ScriptedServer

    pki = make_pki(tmp_path / "pki2")
    receiver = ScriptedServer(pki).start()
    (tmp_path / "slow").mkdir()
    outbox = Outbox(tmp_path / "slow", max_queue=10)
    try:
        receiver.script(("trickle-headers", None))
        _cut_at_two_seconds(outbox, receiver.url("v1/reports"), ca_bundle=str(pki.ca))
    finally:
        receiver.stop()
        outbox.close()


@pytest.mark.parametrize(("status", "sent", "dead"), [(299, 3, 0), (300, 0, 0), (399, 0, 0), (400, 0, 3), (499, 0, 3),
                                                      (500, 0, 0)])
def test_status_boundaries(setup, status: int, sent: int, dead: int) -> None:
    receiver, outbox, config, session = setup
    receiver.status = status
    receiver.start()
    result = push_pending(outbox, config, PUSH_TOKEN, session)
    assert (result.sent, result.dead_lettered, outbox.dead_lettered()) == (sent, dead, dead)
    assert result.remaining == 3 - sent - dead
    if 300 <= status < 400:
        assert "(a redirect, not followed" in result.error
    elif status == 500:
        assert result.error == "HTTP 500"


def test_each_cycle_logs_what_it_did_naming_the_report(setup) -> None:
    import logging

    receiver, outbox, config, session = setup
    receiver.answers = {"report-1": 422, "report-2": 503}
    receiver.start()
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    push_logger = logging.getLogger("agent.report.push")
    push_logger.addHandler(handler)
    push_logger.setLevel(logging.DEBUG)
    try:
        push_pending(outbox, config, PUSH_TOKEN, session)
    finally:
        push_logger.removeHandler(handler)
        push_logger.setLevel(logging.NOTSET)
    events = [(r.getMessage(), r.appban_fields) for r in records]  # type: ignore[attr-defined]
    assert events == [
        ("push.sent", {"report": "report-0", "status": 200}),
        ("push.dead_lettered", {"report": "report-1", "status": 422}),
        ("push.failed", {"report": "report-2", "error": "HTTP 503", "queued": 1}),
    ]


@pytest.mark.parametrize(("value", "wait"), [
    (None, 0.0), ("", 0.0), ("  ", 0.0), ("0", 0.0), ("7", 7.0), ("999999", 86400.0), ("soon", 0.0),
    ("Tue, 01 Dec 2026 12:00:30 GMT", 30.0), ("Tue, 01 Dec 2026 11:00:00 GMT", 0.0),
    ("Tuesday, 01-Dec-26 12:01:00 GMT", 60.0),  # the obsolete RFC 850 form is still a date
])
def test_retry_after_values(value, wait: float) -> None:
    from agent.report.push import retry_after_seconds

    assert retry_after_seconds(value, 1_796_126_400.0) == wait  # now: 2026-12-01T12:00:00Z


def test_a_naive_retry_after_date_is_read_as_utc() -> None:
    from agent.report.push import retry_after_seconds

    assert retry_after_seconds("Tue, 01 Dec 2026 12:00:30 -0000", 1_796_126_400.0) == 30.0


def test_two_poisoned_reports_in_one_cycle_are_both_counted(setup) -> None:
    receiver, outbox, config, session = setup
    receiver.answers = {"report-0": 400, "report-2": 413}
    receiver.start()
    result = push_pending(outbox, config, PUSH_TOKEN, session)
    assert (result.sent, result.dead_lettered, result.remaining) == (1, 2, 0)
    assert [d[:2] for d in outbox.dead_letters()] == [("report-0", 400), ("report-2", 413)]


def test_sending_resumes_exactly_at_the_retry_after_time(setup) -> None:
    receiver, outbox, config, session = setup
    outbox.hold_until(1_796_126_400.0)
    receiver.start()
    assert push_pending(outbox, config, PUSH_TOKEN, session, clock=lambda: 1_796_126_400.0).sent == 0
    assert push_pending(outbox, config, PUSH_TOKEN, session, clock=lambda: 1_796_126_401.0).sent == 3


def test_plain_http_to_loopback_has_the_deadline_too(tmp_path, direct) -> None:
    """push.url may be plain http to 127.0.0.1; a receiver there that trickles is cut off too."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.wait(0.2):
                try:
                    conn.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    return

    threading.Thread(target=trickle, daemon=True).start()
    (tmp_path / "plain").mkdir()
    outbox = Outbox(tmp_path / "plain", max_queue=10)
    try:
        _cut_at_two_seconds(outbox, f"http://127.0.0.1:{listener.getsockname()[1]}/v1/reports")
    finally:
        stop.set()
        listener.close()
        outbox.close()


def test_every_report_refused_for_good_is_set_aside_and_a_new_one_goes_through(setup) -> None:
    receiver, outbox, config, session = setup
    receiver.status = 422
    receiver.start()
    result = push_pending(outbox, config, PUSH_TOKEN, session)
    assert (result.sent, result.remaining, outbox.depth(), outbox.dead_lettered()) == (0, 0, 0, 3)
    outbox.put("report-9", b'{"id": "report-9"}')
    receiver.status = 200
    assert push_pending(outbox, config, PUSH_TOKEN, session).sent == 1
    assert [report for _, report in receiver.deliveries] == ["report-9"]
