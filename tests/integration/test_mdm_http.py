"""The connectors' shared HTTP client (agent/inventory/api.py) against a plain-http stand-in on
127.0.0.1: Retry-After as an HTTP date, paging links that leave the API's host, redirects, and
the JWT signer checked by an independent verifier."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from agent.config import IntuneConfig
from agent.inventory.api import ApiClient, ApiError, Token, drain, retry_after, signed_jwt
from agent.inventory.intune import IntuneConnector
from tests.banlist_servers import ScriptedServer, make_pki
from tests.mdm_servers import StandIn, jwt_parts, private_pem, reply, rsa_key


def _client(server: StandIn, sleeps: list[float]) -> ApiClient:
    return ApiClient("test", server.url, lambda client: Token("t0ken", time.monotonic() + 3600), 5.0,
                     sleep=sleeps.append)


def test_retry_after_as_an_http_date_is_waited_for():
    server = StandIn(lambda seen: reply(200, {"ok": True}))
    try:
        server.fail("/x", 429, retry_after=formatdate(time.time() + 30, usegmt=True))
        sleeps: list[float] = []
        assert _client(server, sleeps).get_json(f"{server.url}/x") == {"ok": True}
    finally:
        server.stop()
    assert len(sleeps) == 1 and 25 <= sleeps[0] <= 31


def test_a_retry_after_beyond_the_cap_is_an_error_not_a_long_sleep():
    server = StandIn(lambda seen: reply(200, {}))
    try:
        server.fail("/x", 503, retry_after="3600")
        sleeps: list[float] = []
        with pytest.raises(ApiError, match="Retry-After 3600 s is longer than 120 s"):
            _client(server, sleeps).get_json(f"{server.url}/x")
    finally:
        server.stop()
    assert sleeps == []


def test_a_redirect_is_not_followed_with_the_token():
    server = StandIn(lambda seen: (302, {"Location": "http://127.0.0.1:9/steal"}, b""))
    try:
        with pytest.raises(ApiError, match="HTTP 302"):
            _client(server, []).get_json(f"{server.url}/x")
        assert [s.path for s in server.seen] == ["/x"]
    finally:
        server.stop()


def test_an_odata_next_link_to_another_host_is_refused(tmp_path):
    server = StandIn(lambda seen: reply(200, {"value": [], "@odata.nextLink": "http://127.0.0.2:8/v1.0/deviceManagement/managedDevices?$skiptoken=1"}))
    try:
        secret = tmp_path / "secret"
        secret.write_text("x")
        config = IntuneConfig(tenant="t", client_id="c", secret_file=str(secret), base_url=server.url, login_url=server.url)
        connector = IntuneConnector(config, client=_client(server, []))
        (error,) = drain(connector).errors
    finally:
        server.stop()
    assert "@odata.nextLink points away from" in error.message
    assert len(server.seen) == 1


def test_signed_jwt_verifies_with_the_public_key():
    key = rsa_key()
    token = signed_jwt({"iss": "a", "n": 1}, private_pem(key).encode(), {"kid": "k1"})
    header, claims = jwt_parts(token, key.public_key())
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "k1"} and claims == {"iss": "a", "n": 1}


def test_retry_after_without_a_usable_value_is_none():
    class Answer:
        headers = {"Retry-After": "soon"}

    assert retry_after(Answer()) is None


def test_an_endless_answer_is_an_error_within_the_deadline_not_a_hang(tmp_path):
    pki = make_pki(tmp_path / "pki")
    server = ScriptedServer(pki).start()
    try:
        server.script(("endless", None))
        client = ApiClient("test", server.url(""), lambda client: Token("t", time.monotonic() + 3600), 0.2,
                           ca_bundle=str(pki.ca))
        started = time.monotonic()
        with pytest.raises(ApiError, match="still arriving after 2 s|larger than 256 MiB"):
            client.get_json(server.url("/v1/enterprises/E/devices"))
        assert time.monotonic() - started < 60
    finally:
        server.stop()
