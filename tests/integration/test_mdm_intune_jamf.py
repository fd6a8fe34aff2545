"""The Intune (Graph) and Jamf Pro connectors against their stand-ins (tests/mdm_servers.py):
client credentials with a secret or a certificate, paging by @odata.nextLink and by totalCount,
detectedApps per device, the AppInvRawData export job, owner types, revoked credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import IntuneConfig, JamfConfig
from agent.inventory.api import drain
from agent.inventory.intune import SELECT, IntuneConnector
from agent.inventory.jamf import JamfConnector
from tests.banlist_servers import Pki, make_pki
from tests.mdm_servers import GraphApp, JamfApp, StandIn, certificate_pem, fixture, jamf_device, rsa_key

TENANT = "contoso.onmicrosoft.com"
EXPORT = Path(__file__).resolve().parents[1] / "fixtures" / "mdm" / "intune-appinvrawdata.csv"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def managed(number: int, owner: str = "company", device_id: str | None = None) -> dict:
    device = fixture("intune-managed-device.json")
    device["id"] = device_id or f"0b8a1c2e-3d4f-4a5b-8c6d-{number:012d}"
    device["managedDeviceOwnerType"] = owner
    return device


def detected(name: str, version: str = "1.0") -> dict:
    app = fixture("intune-detected-app.json")
    app.update(displayName=name, version=version)
    return app


@pytest.fixture
def graph(tmp_path, pki):
    servers = []

    def make(devices, apps, cert=False, **kwargs):
        key = rsa_key()
        app = GraphApp(TENANT, devices, apps, secret="s3cret-value", public_key=key.public_key(), **kwargs)
        server = StandIn(app, (pki.server_cert, pki.server_key))
        servers.append(server)
        app.base = server.url
        secret = tmp_path / "intune.secret"
        secret.write_text("s3cret-value\n")
        credential = {"certificate_file": str(certificate_pem(tmp_path, key))} if cert else {"secret_file": str(secret)}
        config = IntuneConfig(tenant=TENANT, client_id="11111111-2222-3333-4444-555555555555", base_url=server.url,
                              login_url=server.url, ca_bundle=str(pki.ca), page_size=2, poll_interval=0.05,
                              **credential)
        return app, server, config

    yield make
    for server in servers:
        server.stop()


def test_intune_pages_devices_and_their_detected_apps_with_a_client_secret(graph):
    odd = "a b/c?d#é"
    devices = [managed(1), managed(2, "personal"), managed(3, "unknown", device_id=odd)]
    apps = {devices[0]["id"]: [detected("TikTok", "37.5.0"), detected("Outlook"), detected("Teams")],
            devices[1]["id"]: [], odd: [detected("WeChat")]}
    app, server, config = graph(devices, apps)
    result = drain(IntuneConnector(config))
    assert result.errors == []
    (token,) = server.requests(f"/{TENANT}/oauth2/v2.0/token")
    assert token.form()["client_secret"] == "s3cret-value" and token.form()["scope"] == f"{server.url}/.default"
    listing = server.requests("/v1.0/deviceManagement/managedDevices")
    first = listing[0]
    assert first.path == "/v1.0/deviceManagement/managedDevices"
    assert first.param("$select") == SELECT and first.param("$top") == "2"
    assert [s.param("$skiptoken") for s in listing if s.path == first.path] == [None, "2"]
    assert "/v1.0/deviceManagement/managedDevices/a%20b%2Fc%3Fd%23%C3%A9/detectedApps" in {s.path for s in listing}
    assert {s.headers["authorization"] for s in server.seen if "oauth2" not in s.path} == {"Bearer standin-token-1"}
    assert [(d.id, d.kind, d.ownership) for d in result.devices] == [
        (devices[0]["id"], "ios", "corporate"), (devices[1]["id"], "ios", "personal"), (odd, "ios", "unknown")]
    assert sorted((a.device == odd, a.name, a.version, a.publisher) for a in result.apps) == [
        (False, "Outlook", "1.0", "TikTok Ltd."), (False, "Teams", "1.0", "TikTok Ltd."),
        (False, "TikTok", "37.5.0", "TikTok Ltd."), (True, "WeChat", "1.0", "TikTok Ltd.")]
    attributes = dict(result.devices[0].attributes)
    assert attributes["category"] == "Ministers" and attributes["email_domain"] == "mcn.gouv.qc.ca"
    assert any("company-owned" in note for note in result.notes)


def test_intune_certificate_credential_is_a_signed_assertion(graph):
    app, server, config = graph([managed(1)], {managed(1)["id"]: [detected("TikTok")]}, cert=True)
    result = drain(IntuneConnector(config))
    assert result.errors == [] and [a.name for a in result.apps] == ["TikTok"]
    (token,) = server.requests(f"/{TENANT}/oauth2/v2.0/token")
    form = token.form()
    assert "client_secret" not in form
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def test_intune_bulk_export_is_polled_until_completed_and_read_by_the_export_parser(graph):
    devices = [managed(1, device_id="a3f1c2d4-0000-4000-8000-000000000001")]
    app, server, config = graph(devices, {}, export_csv=EXPORT.read_bytes(), polls_before_done=2)
    config = IntuneConfig(**{**config.__dict__, "bulk": True})
    result = drain(IntuneConnector(config))
    assert result.errors == [], result.errors
    polls = server.requests("/beta/deviceManagement/reports/exportJobs('AppInvRawData_0f1e2d3c')")
    assert len(polls) == 3
    assert len(server.requests("/download/")) == 1  # the stand-in asserts no bearer token went there
    assert not server.requests("/v1.0/deviceManagement/managedDevices/")  # no per-device calls in bulk mode
    names = {a.name for a in result.apps}
    assert "TikTok" in names and len(result.apps) > 3
    listed = {d.id: d for d in result.devices}
    assert devices[0]["id"] in listed and len(listed) > 1
    assert {dict(d.attributes)["mdm"] for d in listed.values()} == {"intune"}  # blocked through Intune, never adb


def test_intune_revoked_secret_is_one_error(graph):
    app, server, config = graph([managed(1)], {})
    app.tokens.revoked = True
    (error,) = drain(IntuneConnector(config)).errors
    assert error.collector == "intune"
    assert error.message.startswith("intune token request refused:") and "invalid_client" in error.message
    assert "s3cret" not in error.message


@pytest.fixture
def jamf(tmp_path, pki):
    servers = []

    def make(devices):
        app = JamfApp(devices, "appban-reader", "jamf-secret")
        server = StandIn(app, (pki.server_cert, pki.server_key))
        servers.append(server)
        secret = tmp_path / "jamf.secret"
        secret.write_text("jamf-secret")
        return app, server, JamfConfig(url=server.url, client_id="appban-reader", secret_file=str(secret),
                                       ca_bundle=str(pki.ca), page_size=2)

    yield make
    for server in servers:
        server.stop()


def test_jamf_pages_by_total_count_with_the_sections_asked(jamf):
    devices = [jamf_device(n, "UserEnrollment" if n == 3 else "Institutional") for n in range(1, 6)]
    app, server, config = jamf(devices)
    result = drain(JamfConnector(config))
    assert result.errors == []
    listing = server.requests("/api/v2/mobile-devices/detail")
    assert [s.query for s in listing] == [
        [("section", "GENERAL"), ("section", "APPLICATIONS"), ("section", "USER_AND_LOCATION"),
         ("page", str(n)), ("page-size", "2")] for n in range(3)]
    assert {s.headers["authorization"] for s in listing} == {"Bearer standin-token-1"}
    (token,) = server.requests("/api/oauth/token")
    assert token.form() == {"client_id": "appban-reader", "client_secret": "jamf-secret", "grant_type": "client_credentials"}
    assert [(d.id, d.ownership) for d in result.devices] == [
        ("1", "corporate"), ("2", "corporate"), ("3", "personal"), ("4", "corporate"), ("5", "corporate")]
    tiktok = next(a for a in result.apps if a.device == "1")
    assert (tiktok.source, tiktok.id, tiktok.name, tiktok.version) == ("jamf", "com.zhiliaoapp.musically", "TikTok", "37.5.0")
    assert dict(result.devices[0].attributes)["department"] == "Communications"


def test_jamf_a_token_revoked_mid_run_is_one_error_and_the_first_page_stays(jamf):
    app, server, config = jamf([jamf_device(n) for n in range(1, 6)])
    pages = JamfConnector(config).pages()
    first = next(pages)
    app.tokens.revoked = True
    rest = list(pages)
    assert len(first.devices) == 2 and len(rest) == 1
    (error,) = rest[0].errors
    assert error.message.startswith("jamf token request refused") and "HTTP 401" in error.message
    # the 401 on page 1 renewed the token once, then the token request itself was refused
    assert len(server.requests("/api/oauth/token")) == 2


def test_intune_a_429_storm_on_detected_apps_is_ridden_out_and_a_revocation_mid_run_stops_with_one_error(graph):
    devices = [managed(n) for n in range(1, 5)]
    app, server, config = graph(devices, {d["id"]: [detected("TikTok")] for d in devices})
    first_apps = f"/v1.0/deviceManagement/managedDevices/{devices[0]['id']}/detectedApps"
    server.fail(first_apps, 429, times=3, retry_after="0")
    pages = IntuneConnector(config).pages()
    first = next(pages)
    assert first.errors == [] and len(first.apps) == 2 and len(server.requests(first_apps)) == 4
    app.tokens.revoked = True
    rest = list(pages)
    assert [len(p.devices) for p in rest] == [0]
    (error,) = rest[0].errors
    assert error.message.startswith("intune token request refused:") and "s3cret" not in error.message
