"""The fleet server reading MDM APIs on its schedule: the Jamf and AMAPI stand-ins
(tests/mdm_servers.py) are read by the fleet's MDM job into a real SQLite store, each phone its own
device with its central groups from MDM attributes, and a phone without app reports never stored
as compliant."""

from __future__ import annotations

from types import SimpleNamespace

from agent.banlist.parse import parse_banlist
from agent.config import AmapiConfig, GroupRule, JamfConfig, MdmConfig
from agent.fleet import query
from agent.fleet.config import FleetConfig
from agent.fleet.server import Jobs, configured_connectors
from agent.fleet.store import Store
from agent.fleet.verdict import make_policy
from agent.model import BanListInfo
from tests.mdm_servers import (
    AmapiApp, JamfApp, StandIn, amapi_device, amapi_policy, jamf_device, rsa_key, service_account_key,
)

NOW = 1_800_000_000.0
LIST = """format: appban.banlist/v1
serial: 4
issued: 2026-01-01T00:00:00Z
entries:
  - id: tiktok
    name: TikTok
    applies_to: [communications]
    ownership: [corporate]
    match: {android: [com.zhiliaoapp.musically], ios: [com.zhiliaoapp.musically]}
"""


def test_the_fleet_job_stores_each_mdm_phone_with_central_groups_and_skips_unread_ones(tmp_path) -> None:
    key = rsa_key()
    amapi = AmapiApp("LC01x7yq", [amapi_device(1), amapi_device(2, policy="kiosk")],
                     {"enterprises/LC01x7yq/policies/government-phones": amapi_policy(),
                      "enterprises/LC01x7yq/policies/kiosk": amapi_policy(policy="kiosk", reports=False)},
                     key.public_key())
    jamf = JamfApp([jamf_device(1), jamf_device(2, "UserEnrollment")], "reader", "pw")
    servers = [StandIn(amapi), StandIn(jamf)]
    amapi.token_uri = f"{servers[0].url}/token"
    (tmp_path / "jamf.secret").write_text("pw")
    mdm = MdmConfig(
        amapi=AmapiConfig(enterprise="LC01x7yq", base_url=servers[0].url,
                          credentials_file=str(service_account_key(tmp_path, key, amapi.token_uri))),
        jamf=JamfConfig(url=servers[1].url, client_id="reader", secret_file=str(tmp_path / "jamf.secret")))
    rules = [GroupRule(groups=("communications",), attributes={"department": ("Communications",)}),
             GroupRule(groups=("communications",), attributes={"enrollment_token_data": ("department=Communications",)})]
    banlist = parse_banlist(LIST.encode())
    store = Store(f"sqlite:///{tmp_path / 'fleet.sqlite'}")
    config = FleetConfig(state_dir=str(tmp_path), mdm=mdm)
    try:
        assert configured_connectors(config) == ["amapi", "jamf"]
        jobs = SimpleNamespace(fleet=SimpleNamespace(
            config=config, store=store, policy=make_policy(banlist, BanListInfo(4, "test", False), rules, ())))
        Jobs.read_mdm(jobs)
        with store.read() as connection:
            listed = query.devices(connection, NOW, 86400 * 365 * 10, query.Selection())["devices"]
    finally:
        store.close()
        for server in servers:
            server.stop()
    stored = {d["id"]: (d["source"], d["kind"], tuple(d["groups"]), d["compliant"]) for d in listed}
    assert stored == {
        "enterprises/LC01x7yq/devices/0000000000000001": ("amapi", "android", ("communications",), False),
        "1": ("jamf", "ios", ("communications",), False),
        "2": ("jamf", "ios", ("communications",), True),  # personal: the government-only entry leaves it out
    }  # the kiosk phone without app reports is not stored as a compliant device
