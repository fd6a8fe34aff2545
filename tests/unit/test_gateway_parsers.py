"""Pure parsers of adb and libimobiledevice output, identifier checks and the phone blocking argv."""

from __future__ import annotations

import pytest

from agent.enforce.android import block_arguments
from agent.enforce.ios import manual_instruction
from agent.inventory.android import (
    checked_package, checked_serial, parse_devices, parse_package_line, parse_users, parse_version_names,
)
from agent.inventory.gateway import UnsafeIdentifierError
from agent.inventory.ios import checked_udid, list_arguments, parse_udids
from agent.model import App, Device
from agent.runner import CommandError


def test_package_line_splits_on_the_last_equals_of_the_path() -> None:
    line = ("package:/data/app/~~QuU_uyGs4k3phaXbu5GxDg==/com.tal.kaoyan-wJJf4_YxZ_D23CslB5lBzQ==/base.apk"
            "=com.tal.kaoyan versionCode:183  installer=null uid:10123,1010123")
    listed = parse_package_line(line)
    assert listed is not None
    assert listed.path == "/data/app/~~QuU_uyGs4k3phaXbu5GxDg==/com.tal.kaoyan-wJJf4_YxZ_D23CslB5lBzQ==/base.apk"
    assert (listed.package, listed.version_code, listed.installer, listed.uid) == (
        "com.tal.kaoyan", "183", "", "10123,1010123")


def test_package_line_without_path_and_non_package_lines() -> None:
    listed = parse_package_line("package:com.google.android.youtube  installer=com.android.vending uid:10021")
    assert listed is not None
    assert (listed.package, listed.path, listed.installer) == ("com.google.android.youtube", "", "com.android.vending")
    assert parse_package_line("Error: Unknown option: -x") is None
    assert parse_package_line("package:") is None


def test_devices_states_including_no_permissions() -> None:
    text = (
        "* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
        "List of devices attached\n"
        "emulator-5554          device product:sdk_gphone64 model:sdk_gphone64 device:emu64x transport_id:1\n"
        "0a388e93               no permissions (user in plugdev group; are your udev rules wrong?); "
        "see [http://developer.android.com/tools/device.html] usb:1-1\n\n"
    )
    first, second = parse_devices(text)
    assert (first.serial, first.state, first.details["model"]) == ("emulator-5554", "device", "sdk_gphone64")
    assert (second.serial, second.state) == ("0a388e93", "no permissions")


def test_users_and_version_names() -> None:
    assert parse_users("Users:\n\tUserInfo{0:Owner:c13} running\n\tUserInfo{10:Work: profile:1030}\n") == [
        (0, "Owner"), (10, "Work: profile")]
    dump = ("Packages:\n  Package [a.b] (1):\n    versionName=2.0\n  Package [c.d] (2):\n    versionName=null\n"
            "Hidden system packages:\n  Package [a.b] (3):\n    versionName=1.0\n  Package [e.f] (4):\n"
            "    versionName=9\n")
    assert parse_version_names(dump) == {"a.b": "2.0", "c.d": ""}


@pytest.mark.parametrize("bad", ["com.x;reboot", "com.x reboot", "$(id)", "com..x", "1com.x", "com.x`id`", ""])
def test_package_names_that_could_inject_are_refused(bad: str) -> None:
    with pytest.raises(UnsafeIdentifierError):
        checked_package(bad)
    with pytest.raises(UnsafeIdentifierError):
        block_arguments("uninstall", "R58M31ABCDE", 0, bad)


@pytest.mark.parametrize("bad", ["-s", "a b", "x;y", "$(id)", ""])
def test_serials_and_udids_are_checked(bad: str) -> None:
    with pytest.raises(UnsafeIdentifierError):
        checked_serial(bad)
    with pytest.raises(UnsafeIdentifierError):
        checked_udid(bad)
    assert checked_serial("192.168.1.20:5555") == "192.168.1.20:5555"
    assert checked_udid("00008030-001A35E11E88802E") == "00008030-001A35E11E88802E"


def test_block_arguments_per_method_and_user() -> None:
    assert block_arguments("uninstall", "R58M31ABCDE", 10, "com.ss.android.ugc.trill") == [
        "-s", "R58M31ABCDE", "shell", "pm", "uninstall", "-k", "--user", "10", "com.ss.android.ugc.trill"]
    assert block_arguments("disable", "emulator-5554", 0, "com.tencent.mm") == [
        "-s", "emulator-5554", "shell", "pm", "disable-user", "--user", "0", "com.tencent.mm"]
    with pytest.raises(ValueError):
        block_arguments("wipe", "emulator-5554", 0, "com.tencent.mm")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        block_arguments("disable", "emulator-5554", -1, "com.tencent.mm")


def test_ios_instruction_names_app_device_and_mdm() -> None:
    text = manual_instruction(App(source="ios", id="com.zhiliaoapp.musically", name="TikTok"),
                              Device(id="00008030-001A35E11E88802E", hostname="iPhone de Geneviève", kind="ios"))
    assert "TikTok (com.zhiliaoapp.musically)" in text and "iPhone de Geneviève" in text and "MDM" in text


def test_installer_generations_and_udid_lines() -> None:
    assert list_arguments("COMMANDS:\n  list                List installed apps.\n", "U") == ["-u", "U", "list", "--xml"]
    assert list_arguments("  -u, --udid UDID\n  -l, --list-apps\tList apps\n", "U") == ["-u", "U", "-l", "-o", "xml"]
    with pytest.raises(CommandError, match="unsupported version"):
        list_arguments("  -U, --uuid UUID\tTarget specific device by its 40-digit device UUID.\n", "U")
    assert parse_udids("00008030-001A35E11E88802E (USB)\n\n4f1c2e9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d\n") == [
        "00008030-001A35E11E88802E", "4f1c2e9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d"]
