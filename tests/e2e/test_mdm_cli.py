"""`appban check --source amapi|intune|jamf` on a gateway, as a subprocess, against the stand-in
clouds of tests/mdm_servers.py: exit codes, ownership scope, devices without app reports."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from tests.banlist_servers import make_pki
from tests.conftest import REPO, run_cli
from tests.mdm_servers import AmapiApp, JamfApp, StandIn, amapi_device, amapi_policy, jamf_device, rsa_key, service_account_key

SCHEMA = json.loads((REPO / "docs/schemas/report-v1.schema.json").read_text())
ENTERPRISE = "LC01x7yq"
GOVERNMENT_ONLY = """format: appban.banlist/v1
serial: 1
issued: 2026-01-01T00:00:00Z
entries:
  - id: tiktok
    name: TikTok
    reason: government-issued devices only
    ownership: [corporate]
    device_kinds: [android, ios]
    match: {android: [com.zhiliaoapp.musically], ios: [com.zhiliaoapp.musically]}
"""


@pytest.fixture
def amapi_gateway(tmp_path):
    pki, key = make_pki(tmp_path / "pki"), rsa_key()
    devices = [amapi_device(1), amapi_device(2, policy="kiosk"), amapi_device(3, ownership="PERSONALLY_OWNED")]
    policies = {f"enterprises/{ENTERPRISE}/policies/government-phones": amapi_policy(),
                f"enterprises/{ENTERPRISE}/policies/kiosk": amapi_policy(policy="kiosk", reports=False)}
    app = AmapiApp(ENTERPRISE, devices, policies, key.public_key())
    server = StandIn(app, (pki.server_cert, pki.server_key))
    app.token_uri = f"{server.url}/token"
    config = {"state_dir": str(tmp_path / "state"), "mdm": {"amapi": {
        "enterprise": ENTERPRISE, "credentials_file": str(service_account_key(tmp_path, key, app.token_uri)),
        "base_url": server.url, "ca_bundle": str(pki.ca)}}}
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "ban.yaml").write_text(GOVERNMENT_ONLY)
    yield tmp_path
    server.stop()


def test_check_source_amapi_reports_corporate_phones_and_names_the_one_without_app_reports(amapi_gateway):
    done = run_cli("-vv", "check", "--config", str(amapi_gateway / "agent.yaml"), "--banlist",
                   str(amapi_gateway / "ban.yaml"), "--source", "amapi", "--format", "json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    jsonschema.validate(report, SCHEMA)
    phones = {d["id"]: d for d in report["devices"] if d["kind"] == "android"}
    assert [p["ownership"] for p in phones.values()] == ["corporate", "corporate", "personal"]
    assert [(f["device"], f["app"]["id"]) for f in report["findings"]] == [
        (f"enterprises/{ENTERPRISE}/devices/{1:016x}", "com.zhiliaoapp.musically")]  # the personal phone's copy is out of scope
    (error,) = report["errors"]
    assert error["device"] == f"enterprises/{ENTERPRISE}/devices/{2:016x}" and error["message"].startswith("no app reports")
    assert report["complete"] is False
    assert "mdm.token" in done.stderr and "standin-token" not in done.stderr  # logged, never shown


def test_check_source_jamf_over_plain_http_to_127_0_0_1(tmp_path):
    server = StandIn(JamfApp([jamf_device(1), jamf_device(2, "UserEnrollment")], "reader", "pw"))
    try:
        (tmp_path / "secret").write_text("pw")
        config = {"state_dir": str(tmp_path / "state"),
                  "mdm": {"jamf": {"url": server.url, "client_id": "reader", "secret_file": str(tmp_path / "secret")}}}
        (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
        (tmp_path / "ban.yaml").write_text(GOVERNMENT_ONLY)
        done = run_cli("check", "--config", str(tmp_path / "agent.yaml"), "--banlist", str(tmp_path / "ban.yaml"),
                       "--source", "jamf", "--format", "json")
    finally:
        server.stop()
    assert done.returncode == 1, done.stderr
    assert [f["device"] for f in json.loads(done.stdout)["findings"]] == ["1"]


def test_an_unconfigured_connector_is_one_line_and_no_verdict(tmp_path):
    (tmp_path / "agent.yaml").write_text(f"state_dir: {tmp_path}\n")
    done = run_cli("check", "--config", str(tmp_path / "agent.yaml"), "--source", "intune")
    assert done.returncode == 2
    assert "intune: not available here: mdm.intune is not configured" in done.stderr + done.stdout


def _blocking_gateway(tmp_path, devices, extra_policies=()):
    pki, key = make_pki(tmp_path / "pki"), rsa_key()
    policies = {f"enterprises/{ENTERPRISE}/policies/government-phones": amapi_policy()}
    policies.update({f"enterprises/{ENTERPRISE}/policies/{p}": amapi_policy(policy=p) for p in extra_policies})
    app = AmapiApp(ENTERPRISE, devices, policies, key.public_key())
    server = StandIn(app, (pki.server_cert, pki.server_key))
    app.token_uri = f"{server.url}/token"
    config = {"state_dir": str(tmp_path / "state"),
              "enforcement": {"mode": "block", "audit_log": str(tmp_path / "audit.jsonl")},
              "mdm": {"amapi": {"enterprise": ENTERPRISE, "base_url": server.url, "ca_bundle": str(pki.ca),
                                "credentials_file": str(service_account_key(tmp_path, key, app.token_uri))}}}
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "ban.yaml").write_text(GOVERNMENT_ONLY.replace("    ownership:", "    action: block\n    ownership:"))
    return app, server


def _enforce(tmp_path, *flags):
    return run_cli("check", "--config", str(tmp_path / "agent.yaml"), "--banlist", str(tmp_path / "ban.yaml"),
                   "--source", "amapi", "--enforce", *flags, "--format", "json")


def _audit(tmp_path):
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


def test_enforce_blocks_through_the_policy_keeping_its_other_applications(tmp_path):
    app, server = _blocking_gateway(tmp_path, [amapi_device(1), amapi_device(2), amapi_device(3, policy="byod",
                                                                                             ownership="PERSONALLY_OWNED")], ["byod"])
    try:
        done = _enforce(tmp_path)
    finally:
        server.stop()
    assert done.returncode == 1, done.stderr
    ((policy, query, body),) = app.patches  # the personal phone's policy is not touched
    assert policy == f"enterprises/{ENTERPRISE}/policies/government-phones" and query == [("updateMask", "applications")]
    assert body == {"applications": [
        {"packageName": "com.microsoft.teams", "installType": "FORCE_INSTALLED", "defaultPermissionPolicy": "GRANT"},
        {"packageName": "com.android.chrome", "installType": "AVAILABLE", "managedConfiguration": {"IncognitoModeAvailability": 1}},
        {"packageName": "com.zhiliaoapp.musically", "installType": "BLOCKED"}]}
    outcomes = {f["device"]: f["outcome"] for f in json.loads(done.stdout)["findings"]}
    assert set(outcomes.values()) == {f"blocked in policy {policy}"}
    assert [(e["event"], e["target"]) for e in _audit(tmp_path)] == [("planned", policy), ("done", policy)]


def test_a_shared_policy_with_a_personal_phone_is_not_patched_and_says_why(tmp_path):
    app, server = _blocking_gateway(tmp_path, [amapi_device(1), amapi_device(2, ownership="PERSONALLY_OWNED")])
    try:
        done = _enforce(tmp_path)
    finally:
        server.stop()
    assert app.patches == [] and done.returncode == 1
    (finding,) = json.loads(done.stdout)["findings"]
    assert finding["outcome"].startswith(f"refused: policy enterprises/{ENTERPRISE}/policies/government-phones is "
                                         f"shared with 1 device(s) outside entry 'tiktok': enterprises/{ENTERPRISE}/devices/")
    assert [e["event"] for e in _audit(tmp_path)] == ["refused"]


def test_dry_run_prints_the_policy_before_and_after_and_the_call_and_changes_nothing(tmp_path):
    app, server = _blocking_gateway(tmp_path, [amapi_device(1)])
    try:
        done = _enforce(tmp_path, "--dry-run")
    finally:
        server.stop()
    assert app.patches == [] and done.returncode == 1
    lines = done.stderr.splitlines()
    call = next(line for line in lines if line.startswith("mdm plan: PATCH "))
    assert call == (f"mdm plan: PATCH {server.url}/v1/enterprises/{ENTERPRISE}/policies/government-phones"
                    "?updateMask=applications")
    before = json.loads(next(line for line in lines if line.startswith("  before: "))[len("  before: "):])
    after = json.loads(next(line for line in lines if line.startswith("  after:  "))[len("  after:  "):])
    assert before == amapi_policy()
    assert after["applications"][:2] == before["applications"]
    assert after["applications"][2] == {"packageName": "com.zhiliaoapp.musically", "installType": "BLOCKED"}
    assert {k: v for k, v in after.items() if k != "applications"} == {k: v for k, v in before.items() if k != "applications"}
    assert [e["event"] for e in _audit(tmp_path)] == ["dry-run"]


def test_enforce_on_jamf_writes_the_profile_to_import_and_names_the_api_call(tmp_path):
    server = StandIn(JamfApp([jamf_device(1)], "reader", "pw"))
    try:
        (tmp_path / "secret").write_text("pw")
        config = {"state_dir": str(tmp_path / "state"),
                  "enforcement": {"mode": "block", "audit_log": str(tmp_path / "audit.jsonl")},
                  "mdm": {"jamf": {"url": server.url, "client_id": "reader", "secret_file": str(tmp_path / "secret")}}}
        (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
        (tmp_path / "ban.yaml").write_text(GOVERNMENT_ONLY.replace("    ownership:", "    action: block\n    ownership:"))
        done = run_cli("check", "--config", str(tmp_path / "agent.yaml"), "--banlist", str(tmp_path / "ban.yaml"),
                       "--source", "jamf", "--enforce")
    finally:
        server.stop()
    assert done.returncode == 1, done.stderr
    profile = tmp_path / "state" / "mdm-artefacts" / "jamf-restricted-apps.mobileconfig"
    assert b"<string>com.zhiliaoapp.musically</string>" in profile.read_bytes()
    assert f"POST {server.url}/JSSResource/mobiledeviceconfigurationprofiles/id/0" in done.stdout
    assert [(e["event"], e["action"]) for e in _audit(tmp_path)] == [("done", "mdm-artefact")]
