"""MDM exports through `load_inventory_file`: Intune AppInvRawData (CSV or ZIP) and the generic CSV."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from agent.inventory.file import InventoryFileError, inventory_chunks, load_inventory_file
from agent.inventory.mdm import INTUNE_NOTE, _copy, platform_source
from agent.model import App

MDM = Path(__file__).resolve().parent.parent / "fixtures" / "mdm"
MINISTER, MEMBER = "6b1c0f5e-1d2a-4c3b-9e8f-0a1b2c3d4e5f", "1f2e3d4c-5b6a-4978-8899-aabbccddeeff"


@pytest.mark.parametrize("name", ["intune-appinvrawdata.csv", "intune-appinvrawdata.zip"])
def test_intune_export(name: str) -> None:
    inventory = load_inventory_file(str(MDM / name))
    devices = {d.id: d for d in inventory.devices}
    assert len(devices) == 3 and len(inventory.apps) == 6
    minister = devices[MINISTER]
    assert (minister.hostname, minister.kind, minister.os) == ("QC-MIN-07", "ios", "iOS 17.1.2")
    assert dict(minister.attributes) == {
        "owner": "Marie Roy", "email": "m.roy@mcc.gouv.qc.ca", "email_domain": "mcc.gouv.qc.ca",
        "user_id": "9d8e7f6a-0000-4000-8000-000000000001", "platform": "iOS",
    }
    apps = {(a.device, a.id): a for a in inventory.apps}
    tiktok = apps[(MINISTER, "com.zhiliaoapp.musically")]  # first column: read past the BOM
    assert (tiktok.source, tiktok.name, tiktok.version, tiktok.publisher, tiktok.user) == (
        "ios", "TikTok", "32.5.0", "TikTok Pte. Ltd.", "Marie Roy")
    assert apps[(MINISTER, "com.apple.mobilesafari")].publisher == "Apple, Inc."
    wechat = apps[(MEMBER, "com.tencent.mm")]
    assert (wechat.source, wechat.name, wechat.version) == ("android", "WeChat, 微信", "8.0.47")
    assert inventory.notes == (INTUNE_NOTE,)
    assert inventory.errors == ()


def test_generic_csv_with_groups_and_attributes() -> None:
    inventory = load_inventory_file(str(MDM / "generic.csv"))
    devices = {d.id: d for d in inventory.devices}
    iphone = devices["00008030-001A35E11E88802E"]
    assert iphone.groups == ("ministers", "assembly-members")
    assert dict(iphone.attributes) == {"owner": "gtremblay", "department": "Cabinet"}
    assert devices["R58M31ABCDE"].hostname == "Galaxy of J. Smith"
    names = sorted((a.source, a.name) for a in inventory.apps)
    assert names == [("android", "TikTok"), ("android", "WhatsApp"), ("ios", "微信, WeChat")]
    assert inventory.notes == ()


def _write(tmp_path: Path, text: str, name: str = "export.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_header_case_and_spacing_vary(tmp_path: Path) -> None:
    path = _write(tmp_path, "DEVICE,Platform,App ID,APP-NAME,version\nphone-1,Android,com.x.y,X,1.0\n")
    (app,) = load_inventory_file(path).apps
    assert (app.device, app.source, app.id, app.name, app.version) == ("phone-1", "android", "com.x.y", "X", "1.0")


def test_missing_column_is_one_line_naming_it() -> None:
    path = str(MDM / "intune-missing-deviceid.csv")
    with pytest.raises(InventoryFileError) as caught:
        load_inventory_file(path)
    assert str(caught.value) == f"inventory {path}: Intune AppInvRawData CSV lacks the column DeviceId"


@pytest.mark.parametrize(("content", "problem"), [
    ("name,size\nx,1\n", "header is neither an Intune AppInvRawData export nor the appban generic CSV"),
    ("", "empty file"),
    ("device,platform,app_id,app_name\nd,ios,x,X\n", "appban generic CSV lacks the column version"),
])
def test_unusable_csv(tmp_path: Path, content: str, problem: str) -> None:
    with pytest.raises(InventoryFileError, match=problem):
        load_inventory_file(_write(tmp_path, content))


def test_not_utf8_and_zip_without_csv(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("device,platform,app_id,app_name,version\nd,ios,x,Caf\u00e9,1\n".encode("latin-1"))
    with pytest.raises(InventoryFileError, match="not UTF-8 text"):
        load_inventory_file(str(latin))
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("readme.txt", "nothing here")
    with pytest.raises(InventoryFileError, match="the ZIP holds no .csv file"):
        load_inventory_file(str(archive))


def test_rows_without_device_are_counted_not_lost(tmp_path: Path) -> None:
    path = _write(tmp_path, "device,platform,app_id,app_name,version\nd1,ios,a,A,1\n,ios,b,B,2\nd2,ios,,,\n\n")
    inventory = load_inventory_file(path)
    assert [a.id for a in inventory.apps] == ["a"]
    (error,) = inventory.errors
    assert error.message.endswith("2 row(s) without a device id or app skipped (first on line 3)")


def test_json_inventory_still_loads_with_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "inv.json"
    document = {"format": "appban.inventory/v1", "apps": [{"source": "ios", "id": "a.b", "device": "p"}]}
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(document).encode())
    assert [d.id for d in load_inventory_file(str(path)).devices] == ["p"]


@pytest.mark.parametrize(("platform", "source"), [
    ("Android", "android"), ("androidWorkProfile", "android"), ("iOS", "ios"), ("iPadOS", "ios"),
    ("macOS", "macos"), ("Windows", "windows"), ("3", "mdm"), ("", "mdm"),
])
def test_platform_source(platform: str, source: str) -> None:
    assert platform_source(platform) == source


def test_fast_copy_equals_the_constructor() -> None:
    proto = App(source="", id="com.x", name="X", version="1", publisher="P")
    copied = _copy(proto, "ios", "phone-1", "jsmith")
    assert copied == App(source="ios", id="com.x", name="X", version="1", publisher="P", device="phone-1", user="jsmith")
    assert hash(copied) == hash(replace(proto, source="ios", device="phone-1", user="jsmith"))
    assert proto.device == "local" and proto.source == ""


def test_csv_syntax_error_names_the_line_and_a_broken_zip_is_one_line(tmp_path: Path) -> None:
    huge = _write(tmp_path, "device,platform,app_id,app_name,version\nd,ios,a,A,1\nd,ios,b," + "x" * 200_000 + ",1\n")
    with pytest.raises(InventoryFileError, match=r"line 3: field larger than field limit"):
        load_inventory_file(huge)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(InventoryFileError, match="cannot read the ZIP"):
        load_inventory_file(str(broken))


@pytest.mark.parametrize("field", ["devices", "apps", "errors", "notes"])
def test_a_saved_inventory_whose_list_is_not_a_list_is_one_error_naming_it(tmp_path: Path, field: str) -> None:
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"format": "appban.inventory/v1", field: 5}))
    with pytest.raises(InventoryFileError, match=f"field '{field}' is not a list"):
        load_inventory_file(str(path))


@pytest.mark.parametrize(("record", "problem"), [
    ({"devices": [{"id": "pc", "groups": "ministers"}]}, "bad device record"),
    ({"apps": [{"source": "android", "id": "x", "aliases": "com.zhiliaoapp.musically"}]}, "app #1"),
])
def test_a_saved_inventory_with_a_string_for_a_list_is_refused_not_split_into_letters(
    tmp_path: Path, record: dict, problem: str,
) -> None:
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"format": "appban.inventory/v1", **record}))
    with pytest.raises(InventoryFileError, match=problem):
        load_inventory_file(str(path))


def test_an_export_in_chunks_is_the_export_device_by_device(tmp_path: Path) -> None:
    """What the fleet's import stores: every device whole in one chunk, its apps in file order,
    even when its rows are not together; errors and notes once."""
    header = "device,platform,app_id,app_name,version,user\n"
    rows = [f"d{n % 7},{'android' if n % 2 else 'ios'},app.{n % 5},App {n % 5},1.{n % 3},u{n % 2}\n" for n in range(60)]
    path = _write(tmp_path, header + "".join(rows) + ",android,app.x,X,1,\n" + rows[3])  # a row without device, a duplicate
    whole = load_inventory_file(path)
    chunks = list(inventory_chunks(path, devices=3))
    assert [len(c.devices) for c in chunks] == [3, 3, 1]
    assert [d for c in chunks for d in c.devices] == list(whole.devices)
    for chunk in chunks:
        ids = {d.id for d in chunk.devices}
        assert chunk.apps == tuple(a for d in chunk.devices for a in whole.apps if a.device == d.id)
        assert {a.device for a in chunk.apps} <= ids
    assert (chunks[0].errors, chunks[0].notes) == (whole.errors, whole.notes) and len(whole.errors) == 1
    assert all(not c.errors and not c.notes for c in chunks[1:])
    assert len([a for c in chunks for a in c.apps]) == len(whole.apps) == 61


def test_one_device_across_the_csvs_of_a_zip_is_one_device(tmp_path: Path) -> None:
    header = "device,platform,app_id,app_name,version\n"
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("a.csv", header + "p1,android,com.tencent.mm,WeChat,8.0\n")
        out.writestr("b.csv", header + "p1,ios,com.zhiliaoapp.musically,TikTok,35\np2,ios,com.example,Example,1\n")
    inventory = load_inventory_file(str(archive))
    assert [(d.id, d.kind) for d in inventory.devices] == [("p1", "android"), ("p2", "ios")]
    assert [(a.device, a.source, a.id) for a in inventory.apps] == [
        ("p1", "android", "com.tencent.mm"), ("p1", "android", "com.zhiliaoapp.musically"), ("p2", "ios", "com.example")]
