"""The typed (msgspec) reading of `appban.inventory/v1` files must give exactly what the json +
`inventory_from_dict` reading gives, for every document it accepts, and leave everything else
(leniencies, errors) to that reading."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.inventory.file import (
    InventoryFileError, _typed_inventory, inventory_from_dict, inventory_to_dict, load_inventory_file,
)
from agent.model import App, Device, Inventory

TEXT = st.text(max_size=12)
FIELDS = ("name", "version", "publisher", "path", "user", "device", "sha256")
APPS = st.fixed_dictionaries(
    {"source": TEXT, "id": TEXT},
    optional={**{key: TEXT for key in FIELDS}, "aliases": st.lists(TEXT, max_size=3),
              "extra": st.dictionaries(TEXT, TEXT, max_size=3), "unknown": TEXT},
)
DEVICES = st.fixed_dictionaries(
    {"id": TEXT},
    optional={"hostname": TEXT, "kind": TEXT, "os": TEXT, "groups": st.lists(TEXT, max_size=3),
              "attributes": st.dictionaries(TEXT, TEXT, max_size=3), "ownership": st.sampled_from(
                  ["corporate", "personal", "unknown", "other", None])},
)
DOCUMENTS = st.fixed_dictionaries(
    {"format": st.just("appban.inventory/v1")},
    optional={"devices": st.lists(DEVICES, max_size=3), "apps": st.lists(APPS, max_size=5),
              "errors": st.lists(st.fixed_dictionaries({}, optional={"collector": TEXT, "message": TEXT, "device": TEXT}),
                                 max_size=2),
              "notes": st.lists(TEXT, max_size=2), "collected_at": st.sampled_from([None, "2026-12-01T10:00:00+00:00"]),
              "agent": st.just({"version": "0"})},
)


def _encode(document: dict) -> bytes:
    # ensure_ascii=False: raw UTF-8, as appban writes; lone surrogates cannot be written so
    return json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")


@settings(max_examples=300)
@given(DOCUMENTS)
def test_a_plain_document_reads_the_same_either_way(document: dict) -> None:
    raw = _encode(document)
    try:
        expected = inventory_from_dict(json.loads(raw), "x")
    except (InventoryFileError, ValueError):
        assert _typed_inventory(raw) is None
        return
    typed = _typed_inventory(raw)
    if typed is not None:  # None: a surrogate msgspec refuses; the json reading then serves it
        assert typed == expected
        assert [type(a) for a in typed.apps] == [App] * len(typed.apps)


def test_what_appban_writes_takes_the_typed_path() -> None:
    inventory = Inventory(
        devices=(Device(id="pc", hostname="pc", groups=("staff",), attributes=(("serial", "7"),), ownership="corporate"),),
        apps=(App(source="dpkg", id="vim", name="Vim «é»", device="pc", aliases=("vim:amd64",), extra=(("arch", "amd64"),)),
              App(source="process", id="bash", device="pc", sha256="ab" * 32)),
        notes=("a note",),
    )
    raw = json.dumps(inventory_to_dict(inventory), indent=2, ensure_ascii=False).encode()
    typed = _typed_inventory(raw)
    assert typed is not None and typed == inventory_from_dict(json.loads(raw), "x")
    assert typed.apps == inventory.apps and typed.devices == inventory.devices


@pytest.mark.parametrize("app", [
    {"source": "dpkg", "id": 7},                       # a number where a string belongs: read as "7"
    {"source": "dpkg", "id": "vim", "name": None},     # null: read as ""
    {"source": "dpkg", "id": "vim", "extra": {"pid": 4}},
    {"source": "dpkg", "id": "vim", "aliases": None},
])
def test_leniencies_are_left_to_the_json_reading(tmp_path: Path, app: dict) -> None:
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"format": "appban.inventory/v1", "apps": [app]}))
    assert _typed_inventory(path.read_bytes()) is None
    assert load_inventory_file(str(path)) == inventory_from_dict(json.loads(path.read_bytes()), "x")


@pytest.mark.parametrize(("document", "message"), [
    ({"format": "appban.inventory/v2", "apps": []}, "not an appban.inventory/v1 document"),
    ({"format": "appban.inventory/v1", "apps": [{"id": "x"}]}, "app #1: missing or bad field 'source'"),
    ({"format": "appban.inventory/v1", "collected_at": "yesterday"}, "field 'collected_at'"),
])
def test_errors_are_the_json_readings(tmp_path: Path, document: dict, message: str) -> None:
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(document))
    with pytest.raises(InventoryFileError, match=message):
        load_inventory_file(str(path))


def test_without_msgspec_the_json_reading_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"format": "appban.inventory/v1", "apps": [{"source": "dpkg", "id": "vim"}]}))
    typed = load_inventory_file(str(path))
    monkeypatch.setitem(sys.modules, "msgspec", None)  # `import msgspec` raises ImportError
    assert _typed_inventory(path.read_bytes()) is None
    assert load_inventory_file(str(path)) == typed


def test_a_check_of_this_machine_does_not_import_msgspec(tmp_path: Path) -> None:
    """msgspec is imported on the paths that decode or write big documents only: its ~8 ms would
    be a tenth of a small check's start-up."""
    config = tmp_path / "agent.json"
    config.write_text("{}")
    code = ("import contextlib, io, sys\nfrom agent.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main(['check', '--config', {str(config)!r}, '--source', 'dpkg', '--format', 'json'])\n"
            "print('msgspec' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_a_check_of_a_saved_json_inventory_loads_no_export_reader(tmp_path: Path) -> None:
    """The CSV and ZIP readers (zipfile, shutil, the compressors: ~20 ms) are for MDM exports;
    an appban JSON inventory is read without them."""
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"format": "appban.inventory/v1", "apps": [{"source": "dpkg", "id": "vim"}]}))
    code = ("import contextlib, io, sys\nfrom agent.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main(['check', '--inventory', {str(path)!r}, '--format', 'json'])\n"
            "print(sorted({'agent.inventory.mdm', 'zipfile', 'csv'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_without_msgspec_a_streamed_check_reports_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime, timezone

    from agent.banlist.parse import parse_banlist
    from agent.config import Config
    from agent.model import BanListInfo
    from agent.scan import report_files

    banlist = parse_banlist(b'{"format": "appban.banlist/v1", "serial": 1, "issued": "2026-01-01", '
                            b'"entries": [{"id": "vim", "name": "Vim", "match": {"deb": ["vim"]}}]}')
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"format": "appban.inventory/v1", "devices": [{"id": "pc"}], "apps": [
        {"source": "dpkg", "id": "vim", "device": "pc", "extra": {"arch": "amd64"}},
        {"source": "dpkg", "id": "vim", "device": "pc", "extra": {"arch": "amd64"}},
        {"source": "dpkg", "id": "nano", "device": "laptop"}]}))
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)

    def report() -> dict:
        document = report_files(Config(), banlist, BanListInfo(1, "x", signed=False), now, [str(path)]).to_dict()
        return {key: value for key, value in document.items() if key != "id"}

    typed = report()
    monkeypatch.setitem(sys.modules, "msgspec", None)
    assert report() == typed
    assert [(d["id"], d["apps"]) for d in typed["devices"]] == [("pc", 1), ("laptop", 1)]
    assert [f["app"]["id"] for f in typed["findings"]] == ["vim"]
