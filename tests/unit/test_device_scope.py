"""Scope by device kind and ownership: entries' `device_kinds` and `ownership`, devices'
ownership, the JSON Schema of the ban-list format, and group rules on ownership."""

from __future__ import annotations

import dataclasses
import json
import typing
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import pytest
import yaml

from agent.banlist.parse import BanListError, parse_banlist
from agent.config import Config, GatewayConfig, GroupRule, parse_config
from agent.groups import device_groups
from agent.inventory import local_device
from agent.inventory.base import Context
from agent.match import compile_banlist, match
from agent.model import App, Device, Entry, Match

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs/schemas/banlist-v1.schema.json").read_text())
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)

GOVERNMENT_PHONES = """
format: appban.banlist/v1
serial: 3
issued: 2023-02-28T00:00:00-05:00
entries:
  - id: tiktok-gc
    name: TikTok
    reason: TBS, government-issued mobile devices only
    device_kinds: [android, ios]
    ownership: [corporate]
    match:
      android: [com.zhiliaoapp.musically]
      ios: [com.zhiliaoapp.musically]
      names: ["TikTok*"]
"""


def found(devices: list[Device]) -> list[str]:
    compiled = compile_banlist(parse_banlist(GOVERNMENT_PHONES.encode()))
    apps = [App(source="android" if d.kind != "host" else "process", id="com.zhiliaoapp.musically",
                name="TikTok", device=d.id) for d in devices]
    return [f.device for f in match(apps, {d.id: d for d in devices}, compiled, NOW)]


def test_only_corporate_phones_get_a_finding():
    devices = [
        Device("corp-phone", kind="android", ownership="corporate"),
        Device("byod-phone", kind="android", ownership="personal"),
        Device("laptop", kind="host", ownership="corporate"),
        Device("unknown-phone", kind="android", ownership="unknown"),
    ]
    # unknown ownership stays in scope: not knowing who owns a phone must not hide a banned app
    assert found(devices) == ["corp-phone", "unknown-phone"]


def test_outside_kind_or_ownership_even_an_exempt_group_gets_no_finding():
    devices = [Device("byod", kind="android", ownership="personal", groups=("security-research",))]
    text = GOVERNMENT_PHONES.replace("    ownership: [corporate]\n", "    ownership: [corporate]\n    exempt: [security-research]\n")
    compiled = compile_banlist(parse_banlist(text.encode()))
    app = App(source="android", id="com.zhiliaoapp.musically", device="byod")
    assert match([app], {"byod": devices[0]}, compiled, NOW) == []


def test_omitted_fields_cover_every_kind_and_ownership():
    text = GOVERNMENT_PHONES.replace("    device_kinds: [android, ios]\n    ownership: [corporate]\n", "")
    compiled = compile_banlist(parse_banlist(text.encode()))
    devices = {d.id: d for d in (Device("h", kind="host", ownership="personal"), Device("p", kind="android", ownership="personal"))}
    apps = [App(source="process", id="x", name="TikTok", device="h"), App(source="android", id="com.zhiliaoapp.musically", device="p")]
    assert sorted(f.device for f in match(apps, devices, compiled, NOW)) == ["h", "p"]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("device_kinds", "[androd]", "unknown device kind 'androd'"),
    ("ownership", "[government]", "expected one of corporate, personal"),
    ("ownership", "corporate", "expected a list"),
])
def test_a_bad_kind_or_ownership_is_refused_naming_the_entry_and_field(field, value, message):
    text = GOVERNMENT_PHONES.replace(f"    {field}: ", f"    {field}: {value}\n    old_{field}: ", 1)
    text = "\n".join(line for line in text.splitlines() if "old_" not in line)
    with pytest.raises(BanListError, match=rf"entry 'tiktok-gc' \(#1\) field '{field}.*{message}"):
        parse_banlist(text.encode())


def test_schema_accepts_the_bundled_list_and_the_new_fields_and_refuses_bad_values():
    bundled = json.loads(json.dumps(yaml.safe_load((REPO / "config/banlist.example.yaml").read_text()), default=str))
    jsonschema.validate(bundled, SCHEMA)  # YAML timestamps become the JSON strings a JSON list holds
    document = json.loads(json.dumps(yaml.safe_load(GOVERNMENT_PHONES), default=str))
    jsonschema.validate(document, SCHEMA)
    document["entries"][0]["ownership"] = ["government"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)


def test_schema_names_every_field_the_parser_accepts():
    """The JSON Schema and the dataclasses must not drift: each declares the same keys."""
    entry = SCHEMA["$defs"]["entry"]["properties"]
    assert set(entry) == {f.name for f in dataclasses.fields(Entry)}
    assert set(SCHEMA["$defs"]["match"]["properties"]) == {f.name for f in dataclasses.fields(Match)}
    kinds = typing.get_args(typing.get_type_hints(Entry)["ownership"])[0]
    assert set(entry["ownership"]["items"]["enum"]) == set(typing.get_args(kinds))


def test_a_device_keeps_its_ownership_through_json_and_an_old_inventory_reads_as_unknown():
    device = Device("p", kind="android", ownership="personal")
    assert Device.from_dict(device.to_dict()) == device
    assert Device.from_dict({"id": "old"}).ownership == "unknown"


def test_the_host_takes_its_ownership_from_config_default_corporate(tmp_path):
    assert local_device(Context(root=tmp_path, live=False)).ownership == "corporate"
    config = parse_config(b"device: {ownership: personal}\n", "config")
    assert local_device(Context(root=tmp_path, live=False, config=config)).ownership == "personal"


def test_group_rules_select_on_ownership_and_mdm_attributes():
    config = GatewayConfig(default_groups=("staff",), groups=(
        GroupRule(groups=("byod",), ownership=("personal",)),
        GroupRule(groups=("comms",), attributes={"department": ("Communications",)}),
    ))
    assert device_groups(Device("a", kind="android", ownership="personal"), config) == ("byod",)
    assert device_groups(Device("b", kind="ios", ownership="corporate",
                                attributes=(("department", "communications"),)), config) == ("comms",)
    assert device_groups(Device("c", kind="ios", ownership="corporate"), config) == ("staff",)
    assert Config().gateway.default_ownership == "corporate"
