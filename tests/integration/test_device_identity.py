"""Stable device identity: `appban check --root` reads the machine-id of a Linux image and the
MachineGuid of a Windows image's SOFTWARE hive (a real hive, with the key merged in by the real
hivexregedit), the host name stays a separate field, and macOS's IOPlatformUUID comes from
`ioreg` (a stand-in replaying the recorded output in tests/fixtures/macos)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from agent.platform import _macos, identity
from agent.runner import Runner
from tests.conftest import REPO
from tests.hives import fixture_hive, merge
from tests.service_support import DPKG_STATUS
from tests.stand_ins import stand_in

GUID = "6e4b9c1a-52f3-4d8e-9b7a-1c2d3e4f5a6b"
IOREG = REPO / "tests/fixtures/macos/ioreg-IOPlatformExpertDevice.txt"


def check(root: Path, tmp_path: Path, **device: str) -> dict:
    config = tmp_path / f"agent-{root.name}.yaml"
    config.write_text(yaml.safe_dump({"device": device} if device else {}))
    done = subprocess.run([sys.executable, "-m", "agent", "check", "--config", str(config), "--root", str(root),
                           "--format", "json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)["devices"][0]


def linux_image(folder: Path, machine_id: str) -> Path:
    """A Linux tree with a machine-id and a dpkg database (a check of an empty folder has no verdict)."""
    (folder / "etc").mkdir(parents=True)
    (folder / "etc/machine-id").write_text(machine_id + "\n")
    (folder / "var/lib/dpkg").mkdir(parents=True)
    (folder / "var/lib/dpkg/status").write_text(DPKG_STATUS)
    return folder


def test_linux_images_are_told_apart_by_machine_id_not_by_host_name(tmp_path: Path) -> None:
    one = check(linux_image(tmp_path / "one", "0" * 31 + "1"), tmp_path, hostname="desk-17")
    two = check(linux_image(tmp_path / "two", "0" * 31 + "2"), tmp_path, hostname="desk-17")
    assert (one["id"], one["hostname"]) == ("0" * 31 + "1", "desk-17")
    assert (two["id"], two["hostname"]) == ("0" * 31 + "2", "desk-17")


def test_an_image_prepared_for_cloning_has_no_machine_id_yet(tmp_path: Path) -> None:
    image = linux_image(tmp_path / "golden", "uninitialized")
    assert check(image, tmp_path)["id"] == str(image)
    assert check(image, tmp_path, id="golden-master")["id"] == "golden-master", "config device.id wins"


def test_a_windows_image_is_known_by_the_machine_guid_in_its_software_hive(tmp_path: Path) -> None:
    image = tmp_path / "win"
    hive = fixture_hive("ntuser_software_partial", image / "Windows/System32/config/SOFTWARE")
    merge(hive, {r"Microsoft\Cryptography": {"MachineGuid": GUID.upper()}})
    assert identity.image_device_id(image) == GUID
    device = check(image, tmp_path, hostname="WS-0042")
    assert (device["id"], device["hostname"]) == (GUID, "WS-0042")


def test_a_damaged_or_keyless_hive_gives_no_id(tmp_path: Path) -> None:
    keyless = tmp_path / "keyless"
    fixture_hive("ntuser_software_partial", keyless / "Windows/System32/config/SOFTWARE")
    damaged = tmp_path / "damaged"
    fixture_hive("corrupted_system_hive", damaged / "Windows/System32/config/SOFTWARE")
    assert identity.image_device_id(keyless) == "" and identity.image_device_id(damaged) == ""


def test_macos_reads_io_platform_uuid_from_ioreg(tmp_path: Path) -> None:
    ioreg = stand_in(tmp_path / "ioreg", stdout=IOREG.read_text())
    assert _macos.live_device_id(Runner(commands={"ioreg": str(ioreg)})) == "3F1E9C5A-7B2D-5E4F-9A8B-0C1D2E3F4A5B"
    assert ioreg.calls() == [["-rd1", "-c", "IOPlatformExpertDevice"]]
    broken = stand_in(tmp_path / "broken", exit_code=1)
    assert _macos.live_device_id(Runner(commands={"ioreg": str(broken)})) == ""


def test_identity_parsers() -> None:
    assert identity.parse_machine_id("3d1219c7c4c5404aaa1f6d2a48adfda4\n") == "3d1219c7c4c5404aaa1f6d2a48adfda4"
    assert identity.parse_machine_id("uninitialized\n") == "" and identity.parse_machine_id("") == ""
    assert identity.parse_guid("{not a guid}") == "" and identity.parse_guid(GUID.upper() + "\x00") == GUID
    assert identity.platform_uuid('"IOPlatformUUID" = "nope"') == ""
