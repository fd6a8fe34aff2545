"""Pushing the outbox to a real HTTPS receiver on 127.0.0.1 that requires a client certificate
and a bearer token: order kept, nothing lost while the receiver is down or failing."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.banlist.fetch import make_session
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
                        client_key=str(pki.client_key), timeout=2.0)
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


def test_a_report_refused_for_good_is_dropped_and_the_rest_go_on(setup) -> None:
    receiver, outbox, config, session = setup
    receiver.status = 422
    receiver.start()
    result = push_pending(outbox, config, PUSH_TOKEN, session)
    assert (result.sent, result.remaining, outbox.depth()) == (0, 0, 0)
    outbox.put("report-9", b'{"id": "report-9"}')
    receiver.status = 200
    assert push_pending(outbox, config, PUSH_TOKEN, session).sent == 1
    assert [report for _, report in receiver.deliveries] == ["report-9"]
