"""The fleet config: the example documents every key with its default, bad values are refused
with one line naming the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from agent.config import ConfigError
from agent.fleet.config import FleetConfig, load_fleet_config
from tests.conftest import REPO

EXAMPLE = REPO / "config" / "fleet.example.yaml"


def keys(cls: type, prefix: str = "") -> set[str]:
    found = set()
    for field in dataclasses.fields(cls):
        found.add(prefix + field.name)
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        if dataclasses.is_dataclass(default):
            found |= keys(type(default), f"{prefix}{field.name}.")
    return found


def flatten(data: dict, prefix: str = "") -> set[str]:
    found = set()
    for key, value in data.items():
        found.add(prefix + key)
        if isinstance(value, dict) and key != "attributes":
            found |= flatten(value, f"{prefix}{key}.")
    return found


def test_the_example_documents_every_key_with_its_default() -> None:
    assert flatten(yaml.safe_load(EXAMPLE.read_text())) == keys(FleetConfig)
    assert load_fleet_config(str(EXAMPLE)) == FleetConfig()


@pytest.mark.parametrize(("text", "message"), [
    ("stale_after: soon\n", "stale_after"),
    ("pull: {targets: [{token_file: x}]}\n", "url"),
    ("listen_on: x\n", "listen_on"),
    ("max_body: 0\n", "max_body"),
    ("header_timeout: 0\n", "header_timeout"),
    ("max_connections_per_client: -1\n", "max_connections_per_client"),
    ("gateways: [{gateway: gw-1}]\n", "kinds"),
    ("gateways: [{gateway: gw-1, kinds: []}]\n", "gateways[0]"),
    ("gateways: [{gateway: gw-1, kinds: [host]}]\n", "gateways[0]"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "fleet.yaml").write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_fleet_config(str(tmp_path / "fleet.yaml"))
    assert message in str(refused.value) and "\n" not in str(refused.value)
