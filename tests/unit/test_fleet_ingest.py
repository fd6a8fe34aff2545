"""Reading pushed reports (pure): every hostile or broken body is refused with the status it
earns and a one-line reason; a good report yields its inventory and the agent's claim."""

from __future__ import annotations

import json

import pytest

from agent.fleet.ingest import RefusedReport, parse_report


def report(**changes: object) -> dict:
    document = {
        "format": "appban.report/v1", "id": "r-1", "agent": {"version": "0.1.0"},
        "banlist": {"serial": 7, "signer": "key-A"},
        "devices": [{"id": "host-1", "hostname": "h", "kind": "host", "groups": ["staff"]}],
        "findings": [],
        "inventory": {"format": "appban.inventory/v1", "devices": [{"id": "host-1", "groups": ["staff"]}],
                      "apps": [{"source": "dpkg", "id": "wechat", "device": "host-1"}]},
    }
    document.update(changes)
    return document


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def test_a_good_report() -> None:
    report_id, inventory, claim = parse_report(body(report()), "host-1")
    assert report_id == "r-1" and [a.id for a in inventory.apps] == ["wechat"]
    assert (claim.serial, claim.signer, claim.groups, claim.agent_version) == (7, "key-A", ("staff",), "0.1.0")


def test_nul_characters_are_replaced_not_stored() -> None:
    app = {"source": "dpkg", "id": "a\u0000b", "name": "lit\\u0000eral", "device": "host-1"}
    _, inventory, _ = parse_report(body(report(inventory={"format": "appban.inventory/v1", "apps": [app]})), "host-1")
    assert (inventory.apps[0].id, inventory.apps[0].name) == ("a\ufffdb", "lit\\u0000eral")


def test_the_reporting_device_is_always_in_the_inventory() -> None:
    _, inventory, _ = parse_report(body(report(inventory={"format": "appban.inventory/v1", "devices": [], "apps": []})),
                                   "host-1")
    assert [d.id for d in inventory.devices] == ["host-1"] and inventory.devices[0].groups == ("staff",)


def test_without_inventory_the_findings_apps_are_rechecked() -> None:
    finding = {"app": {"source": "dpkg", "id": "tiktok-desktop", "device": "host-1"}}
    document = report(findings=[finding])
    del document["inventory"]
    _, inventory, _ = parse_report(body(document), "host-1")
    assert [a.id for a in inventory.apps] == ["tiktok-desktop"]


def _without_inventory(**changes: object) -> dict:
    document = report(**changes)
    del document["inventory"]
    return document


HOSTILE = [
    ("not json", b"{nope", 400),
    ("binary", b"\xff\xfe\x00", 400),
    ("a list", b"[]", 422),
    ("wrong format", body(report(format="appban.inventory/v1")), 422),
    ("no id", body(report(id="")), 422),
    ("huge id", body(report(id="x" * 300)), 422),
    ("forged log line in the id", body(report(id='r\n{"event": "forged"}')), 422),
    ("escape sequence in a device id", body(report(devices=[{"id": "host-1\x1b[2J"}])), 422),
    ("no devices", body(report(devices=[])), 422),
    ("another device", body(report(devices=[{"id": "host-2"}])), 403),
    ("smuggled device", body(report(inventory={"format": "appban.inventory/v1", "devices": [{"id": "host-1"}],
                                               "apps": [{"source": "dpkg", "id": "x", "device": "host-9"}]})), 403),
    ("bad inventory", body(report(inventory={"format": "nope"})), 422),
    ("bad app", body(report(inventory={"format": "appban.inventory/v1", "devices": [], "apps": [{"id": 1}]})), 422),
    ("apps not a list", body(report(inventory={"format": "appban.inventory/v1", "apps": "x"})), 422),
    ("a digest with the inventory", body(report(inventory_digest="a" * 64)), 422),
    ("a digest that is not hex", body({**_without_inventory(), "inventory_digest": "A" * 64}), 422),
    ("a digest that is not text", body({**_without_inventory(), "inventory_digest": 7}), 422),
]


@pytest.mark.parametrize(("case", "data", "status"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_reports_are_refused(case: str, data: bytes, status: int) -> None:
    with pytest.raises(RefusedReport) as refused:
        parse_report(data, "host-1")
    assert refused.value.status == status and "\n" not in str(refused.value)


def test_a_rescan_that_only_moves_collected_at_is_unchanged() -> None:
    from agent.fleet.ingest import read_report

    def hashed(collected: str, apps: list[dict]) -> str:
        inventory = {**report()["inventory"], "collected_at": collected, "apps": apps}
        return read_report(body(report(inventory=inventory)), "host-1").input_hash("policy")

    apps = report()["inventory"]["apps"]
    assert hashed("2026-12-01T10:00:00+00:00", apps) == hashed("2026-12-01T11:00:00+00:00", apps)
    assert hashed("2026-12-01T10:00:00+00:00", apps) != hashed("2026-12-01T10:00:00+00:00", [])


@pytest.mark.parametrize("odd", [b'{"x": NaN, ', b'\xef\xbb\xbf{"x": "\\ud800", '], ids=["NaN", "BOM and a lone surrogate"])
def test_json_the_fast_decoder_refuses_is_read_as_before(odd: bytes) -> None:
    """orjson refuses what the standard library accepted; the fallback keeps those bodies usable."""
    from agent.fleet.ingest import read_report

    data = odd + body(report())[1:]
    pushed = read_report(data, "host-1")
    assert pushed.report_id == "r-1" and len(pushed.input_hash("policy")) == 64
    assert read_report(data, "host-1").input_hash("policy") == pushed.input_hash("policy")


def test_a_report_naming_its_inventory_by_digest_hashes_as_the_whole_one() -> None:
    """The differential push: the inventory's digest in place of the inventory gives the input
    hash of the whole report, so the fleet sees it unchanged exactly when the whole one would be;
    another digest, or other findings with the same digest, are another input."""
    from agent.fleet.ingest import read_report

    whole = read_report(body(report()), "host-1")
    digest = whole.inventory_digest
    named = read_report(body({**_without_inventory(), "inventory_digest": digest}), "host-1")
    assert named.digest_only and not whole.digest_only and named.inventory_digest == digest
    assert named.input_hash("policy") == whole.input_hash("policy")
    other = read_report(body({**_without_inventory(), "inventory_digest": "0" * 64}), "host-1")
    assert other.input_hash("policy") != whole.input_hash("policy")
    changed = read_report(body({**_without_inventory(findings=[{"entry": "x"}]), "inventory_digest": digest}), "host-1")
    assert changed.input_hash("policy") != whole.input_hash("policy")
    assert read_report(body(_without_inventory()), "host-1").inventory_digest == ""
