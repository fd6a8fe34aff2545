"""The Android Management API connector against the HTTPS stand-in (tests/mdm_servers.py):
paging, the JWT bearer token, token renewal, 429/5xx handling, devices without app reports, a
credential revoked mid-run and identifiers with odd characters."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from agent.config import AmapiConfig
from agent.inventory.amapi import AmapiConnector
from agent.inventory.api import drain
from tests.banlist_servers import Pki, make_pki
from tests.mdm_servers import AmapiApp, StandIn, Tokens, amapi_device, amapi_policy, rsa_key, service_account_key

ENTERPRISE = "LC01x7yq"
POLICY = f"enterprises/{ENTERPRISE}/policies/government-phones"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def key():
    return rsa_key()


class Cloud:
    """A running AMAPI stand-in and the connector config aimed at it."""

    def __init__(self, tmp_path, pki: Pki, key, devices, policies, enterprise=ENTERPRISE, tokens=None, page_size=2):
        self.app = AmapiApp(enterprise, devices, policies, key.public_key(), tokens)
        self.server = StandIn(self.app, (pki.server_cert, pki.server_key))
        self.app.token_uri = f"{self.server.url}/token"
        self.config = AmapiConfig(
            enterprise=enterprise, credentials_file=str(service_account_key(tmp_path, key, self.app.token_uri)),
            base_url=self.server.url, ca_bundle=str(pki.ca), page_size=page_size, timeout=10.0,
        )

    def connector(self) -> AmapiConnector:
        return AmapiConnector(self.config)


@pytest.fixture
def cloud(tmp_path, pki, key) -> Iterator[Cloud]:
    made: list[Cloud] = []

    def make(devices, policies=None, **kwargs) -> Cloud:
        made.append(Cloud(tmp_path, pki, key, devices, policies or {POLICY: amapi_policy()}, **kwargs))
        return made[-1]

    yield make
    for one in made:
        one.server.stop()


def test_several_pages_are_read_with_the_bearer_token_and_each_policy_once(cloud):
    c = cloud([amapi_device(n) for n in range(5)])
    result = drain(c.connector())
    listing = c.server.requests(f"/v1/enterprises/{ENTERPRISE}/devices")
    assert [(s.param("pageSize"), s.param("pageToken")) for s in listing] == [("2", None), ("2", "2"), ("2", "4")]
    assert {s.headers["authorization"] for s in listing} == {"Bearer standin-token-1"}
    assert len(c.server.requests("/token")) == 1 and len(c.server.requests(f"/v1/{POLICY}")) == 1
    assert [d.id for d in result.devices] == [f"enterprises/{ENTERPRISE}/devices/{n:016x}" for n in range(5)]
    assert result.errors == []
    first = [a for a in result.apps if a.device == result.devices[0].id]
    assert [(a.source, a.id, a.name, a.version) for a in first] == [
        ("amapi", "com.zhiliaoapp.musically", "TikTok", "35.1.2"),
        ("amapi", "com.android.chrome", "Chrome", "131.0.6778.81"),
    ]  # the REMOVED WhatsApp report is not an installed app
    tiktok = first[0]
    assert tiktok.sha256 == "4f1c7f3a0b8d2e6a9c5b1d3f7e2a4c6b8d0f1e3a5c7b9d1f3e5a7c9b1d3f5e7a"
    assert tiktok.extra_value("installer") == "com.android.vending"
    assert tiktok.extra_value("application_source") == "INSTALLED_FROM_PLAY_STORE"
    device = result.devices[0]
    attributes = dict(device.attributes)
    assert (device.kind, device.os, device.ownership) == ("android", "Android 14", "corporate")
    assert attributes["serial"] == "R58M0000000" and attributes["policy"] == POLICY and attributes["mdm"] == "amapi"
    assert attributes["enrollment_token_data"] == "department=Communications"


def test_ownership_comes_from_ownership_then_management_mode(cloud):
    personal, unspecified_profile, unknown = amapi_device(1, ownership="PERSONALLY_OWNED"), amapi_device(2), amapi_device(3)
    unspecified_profile.pop("ownership")
    unspecified_profile["managementMode"] = "PROFILE_OWNER"
    unknown.pop("ownership")
    unknown["managementMode"] = "MANAGEMENT_MODE_UNSPECIFIED"
    result = drain(cloud([personal, unspecified_profile, unknown]).connector())
    assert [d.ownership for d in result.devices] == ["personal", "personal", "unknown"]
    assert any("work profile's apps only" in note for note in result.notes)


def test_a_device_whose_policy_has_no_app_reports_is_an_error_naming_it(cloud):
    quiet = f"enterprises/{ENTERPRISE}/policies/kiosk"
    devices = [amapi_device(1), amapi_device(2, policy="kiosk"), amapi_device(3)]
    devices[2].pop("applicationReports")
    result = drain(cloud(devices, {POLICY: amapi_policy(), quiet: amapi_policy(policy="kiosk", reports=False)}).connector())
    assert [(e.device, e.message) for e in result.errors] == [
        (devices[1]["name"], f"no app reports: policy {quiet} does not enable statusReportingSettings.applicationReportsEnabled"),
        (devices[2]["name"], "no app reports yet: the device has sent no status report with its apps"),
    ]
    assert {a.device for a in result.apps} == {devices[0]["name"]}
    assert len(result.devices) == 3  # still listed, so the report shows them (with their errors)


def test_retry_after_is_honoured_and_a_short_429_storm_is_ridden_out(cloud):
    c = cloud([amapi_device(n) for n in range(4)])
    path = f"/v1/enterprises/{ENTERPRISE}/devices"
    c.server.fail(path, 429, times=1, retry_after="1")
    c.server.fail(path, 503, times=1)
    c.server.fail(path, 429, times=3, retry_after="0")
    result = drain(c.connector())
    listing = c.server.requests(path)
    assert len(listing) == 5 + 2 and result.errors == [] and len(result.devices) == 4
    assert listing[1].at - listing[0].at >= 0.95  # Retry-After: 1 was waited for (a lower bound holds under load)


def test_a_429_storm_longer_than_the_retries_is_one_error_and_the_pages_read_stay(cloud):
    c = cloud([amapi_device(n) for n in range(4)])
    pages = c.connector().pages()
    first = next(pages)
    c.server.fail(f"/v1/enterprises/{ENTERPRISE}/devices", 429, times=6, retry_after="0")
    rest = list(pages)
    assert len(first.devices) == 2 and len(rest) == 1
    (error,) = rest[0].errors
    assert error.collector == "amapi" and "HTTP 429" in error.message and f"/v1/enterprises/{ENTERPRISE}/devices" in error.message
    assert "standin-token" not in error.message


def test_an_expired_token_is_renewed_before_use_and_a_401_renews_it_once(cloud):
    c = cloud([amapi_device(n) for n in range(6)], tokens=Tokens(lifetime=61.0))  # renewed 60 s before expiry
    pages = c.connector().pages()
    next(pages)
    time.sleep(1.2)
    next(pages)
    c.server.fail(f"/v1/enterprises/{ENTERPRISE}/devices", 401)  # rotated server-side before its time
    assert list(pages)[-1].errors == []
    tokens = [s.headers.get("authorization") for s in c.server.requests(f"/v1/enterprises/{ENTERPRISE}/devices")]
    assert tokens == ["Bearer standin-token-1", "Bearer standin-token-2", "Bearer standin-token-2", "Bearer standin-token-3"]


def test_a_credential_revoked_mid_run_is_one_error_and_what_was_read_stays(cloud):
    c = cloud([amapi_device(n) for n in range(6)])
    pages = c.connector().pages()
    first = next(pages)
    c.app.tokens.revoked = True
    rest = list(pages)
    assert len(first.devices) == 2 and [len(p.devices) for p in rest] == [0]
    (error,) = rest[0].errors
    assert error.message.startswith("amapi token request refused: amapi: POST /token: HTTP 400 invalid_grant")


def test_identifiers_with_odd_characters_are_escaped_in_paths(cloud):
    odd = "LC 01+é?x#%"  # (resource ids never hold "/": AMAPI names are slash-separated)
    policy = f"enterprises/{odd}/policies/p 1"
    c = cloud([amapi_device(1, enterprise=odd, policy="p 1")], {policy: amapi_policy(enterprise=odd, policy="p 1")},
              enterprise=odd)
    result = drain(c.connector())
    assert result.errors == [] and len(result.apps) == 2
    paths = [s.path for s in c.server.seen if s.path != "/token"]
    assert paths == ["/v1/enterprises/LC%2001%2B%C3%A9%3Fx%23%25/devices",
                     "/v1/enterprises/LC%2001%2B%C3%A9%3Fx%23%25/policies/p%201"]


def test_a_bad_key_file_is_one_clear_error_without_its_content(cloud, tmp_path):
    c = cloud([amapi_device(1)])
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----secret"}')
    connector = AmapiConnector(AmapiConfig(enterprise=ENTERPRISE, credentials_file=str(bad), base_url=c.server.url))
    (error,) = drain(connector).errors
    assert error.message == f"amapi credentials_file {bad}: not a usable service-account key (lacks 'client_email')"
    assert "secret" not in error.message
