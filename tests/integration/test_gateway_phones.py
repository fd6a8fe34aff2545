"""The android and ios collectors against stand-in adb / libimobiledevice tools replaying
recorded output (see tests/phones.py and tests/fixtures/phones/README.md)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.config import Config, GatewayConfig
from agent.enforce.android import block
from agent.inventory.android import AndroidCollector
from agent.inventory.base import Context
from agent.inventory.ios import IosCollector
from agent.runner import CommandError, Runner
from tests.phones import (
    FIXTURES, IPHONE, IPHONE_UNTRUSTED, PIXEL2, SAMSUNG, STUCK, Reply, android_calls_expected, android_replies,
    calls, install, ios_replies,
)

TIMEOUT = 6.0
"""Per call: a stand-in (a Python script) answers in well under a second, but on a loaded 2-core
machine its start alone can take more; the stuck phone still hangs for 30 s."""


def _context(commands: dict[str, str]) -> Context:
    config = Config(commands=commands, gateway=GatewayConfig(enabled=True, timeout=TIMEOUT, parallel=4))
    return Context(runner=Runner(commands=commands), config=config)


@pytest.fixture(scope="module")
def android(tmp_path_factory: pytest.TempPathFactory):
    """One run of the Android scenario, shared by the tests that look at its parts."""
    folder = tmp_path_factory.mktemp("android")
    log = folder / "calls.log"
    adb = install(folder, "adb", android_replies(stuck_for=30), log)
    started = time.monotonic()
    result = AndroidCollector().collect(_context({"adb": adb}))
    return result, time.monotonic() - started, log


def _apps(result, device: str, user: str) -> dict:
    return {a.id: a for a in result.apps if a.device == device and a.user == user}


def test_android_makes_exactly_the_recorded_calls(android) -> None:
    _, _, log = android
    assert sorted(calls(log)) == android_calls_expected()


def test_android_reads_two_phones_and_the_work_profile(android) -> None:
    result, _, _ = android
    devices = {d.id: d for d in result.devices}
    assert set(devices) == {SAMSUNG, PIXEL2}
    samsung = devices[SAMSUNG]
    assert (samsung.kind, samsung.os, samsung.hostname) == ("android", "Android 14 (SDK 34)", "QC-MIN-07 Galaxy S21")
    assert devices[PIXEL2].hostname == ""
    assert dict(samsung.attributes)["model"] == "SM-G991B"
    assert dict(samsung.attributes)["manufacturer"] == "samsung"
    owner, work = _apps(result, SAMSUNG, "0"), _apps(result, SAMSUNG, "10")
    assert set(owner) == {"com.zhiliaoapp.musically", "com.tencent.mm", "com.android.chrome",
                          "com.sec.android.app.camera", "com.example.beta"}
    assert set(work) == {"com.android.chrome", "com.ss.android.ugc.trill", "com.microsoft.teams"}
    trill = work["com.ss.android.ugc.trill"]
    assert trill.extra_value("profile") == "Work profile"
    assert trill.extra_value("uid") == "1010248"
    tiktok = owner["com.zhiliaoapp.musically"]
    assert tiktok.path == ("/data/app/~~QuU_uyGs4k3phaXbu5GxDg==/com.zhiliaoapp.musically-"
                           "wJJf4_YxZ_D23CslB5lBzQ==/base.apk")
    assert (tiktok.version, tiktok.extra_value("version_code")) == ("33.8.4", "2023308040")
    assert tiktok.extra_value("installer") == "com.android.vending"
    assert (tiktok.extra_value("system"), tiktok.extra_value("enabled")) == ("false", "true")


def test_android_flags_system_disabled_and_odd_versions(android) -> None:
    result, _, _ = android
    owner, work = _apps(result, SAMSUNG, "0"), _apps(result, SAMSUNG, "10")
    wechat = owner["com.tencent.mm"]
    assert (wechat.extra_value("enabled"), wechat.extra_value("installer")) == ("false", "")
    camera = owner["com.sec.android.app.camera"]
    assert (camera.extra_value("system"), camera.version) == ("true", "14.0.01.61 β")
    assert owner["com.example.beta"].version == "2.0 beta (build 7)"
    assert owner["com.example.beta"].extra_value("installer") == "com.android.packageinstaller"
    assert owner["com.android.chrome"].version == "120.0.6099.230"  # not the hidden factory copy
    assert work["com.microsoft.teams"].version == ""  # versionName=null
    assert work["com.microsoft.teams"].extra_value("version_code") == "2024190201"


def test_android_falls_back_on_an_old_pm(android) -> None:
    result, _, _ = android
    pixel = _apps(result, PIXEL2, "0")
    assert set(pixel) == {"com.zhiliaoapp.musically", "com.android.chrome"}
    assert pixel["com.zhiliaoapp.musically"].version == "26.1.3"
    assert pixel["com.android.chrome"].extra_value("system") == "true"
    assert next(d for d in result.devices if d.id == PIXEL2).os == "Android 8.1.0 (SDK 27)"


def test_android_reports_unready_and_stuck_phones_without_stalling(android) -> None:
    result, elapsed, _ = android
    errors = {e.device: e.message for e in result.errors}
    assert set(errors) == {"9A281FFAZ003KP", "192.168.1.20:5555", STUCK}
    assert errors["9A281FFAZ003KP"].startswith("device is unauthorized: accept")
    assert errors["192.168.1.20:5555"].startswith("device is offline")
    assert f"timed out after {TIMEOUT:g}s" in errors[STUCK]
    assert all(e.collector == "android" for e in result.errors)
    assert elapsed < 20, "the stuck phone (30 s) must cost one timeout, not stall the run"


@pytest.mark.parametrize(("help_file", "list_args"), [
    ("ideviceinstaller-1.1.1-help.txt", ("-l", "-o", "xml")),
    ("ideviceinstaller-1.2.0-help.txt", ("list", "--xml")),
])
def test_ios_reads_each_installer_generation(tmp_path: Path, help_file: str, list_args: tuple[str, ...]) -> None:
    log = tmp_path / "calls.log"
    commands = {
        tool: install(tmp_path, tool, replies, log)
        for tool, replies in ios_replies(help_file, list_args).items()
    }
    result = IosCollector().collect(_context(commands))
    assert sorted(calls(log)) == sorted([
        ["idevice_id", "-l"], ["ideviceinfo", "-u", IPHONE, "-x"],
        ["ideviceinfo", "-u", IPHONE_UNTRUSTED, "-x"], ["ideviceinstaller", "--help"],
        ["ideviceinstaller", "-u", IPHONE, *list_args],
    ])
    (device,) = result.devices
    assert (device.id, device.kind, device.hostname, device.os) == (IPHONE, "ios", "iPhone de Geneviève", "iOS 17.1.2")
    assert dict(device.attributes)["serial"] == "F2LZK0ABN72J"
    apps = {a.id: a for a in result.apps}
    assert (apps["com.tencent.xin"].name, apps["com.tencent.xin"].version) == ("微信", "8.0.4")
    assert apps["com.tencent.xin"].extra_value("build") == "8.0.4.34"
    assert (apps["imgurmobile"].name, apps["imgurmobile"].version) == ('Imgur, "the" app', "416")
    assert apps["com.sf-express.waybillcn"].name == "顺丰速运"
    assert all(a.source == "ios" and a.device == IPHONE for a in result.apps)
    (error,) = result.errors
    assert error.device == IPHONE_UNTRUSTED
    assert "Pairing dialog response pending" in error.message and "Trust This Computer" in error.message


def test_phone_collectors_stay_off_unless_the_gateway_is_enabled() -> None:
    ctx = Context(config=Config())
    assert "gateway.enabled" in AndroidCollector().unavailable(ctx)
    assert "gateway.enabled" in IosCollector().unavailable(ctx)


def test_android_blocking_runs_pm_through_the_runner(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    adb = install(tmp_path, "adb", {
        ("-s", SAMSUNG, "shell", "pm", "uninstall", "-k", "--user", "10", "com.ss.android.ugc.trill"):
            Reply("pm-uninstall-success.txt"),
        ("-s", SAMSUNG, "shell", "pm", "disable-user", "--user", "0", "com.tencent.mm"): Reply("pm-disable-user.txt"),
        ("-s", SAMSUNG, "shell", "pm", "uninstall", "-k", "--user", "0", "com.zhiliaoapp.musically"):
            Reply("pm-uninstall-failure.txt", exit=1),
    }, log)
    runner = Runner(commands={"adb": adb})
    assert block(runner, "uninstall", SAMSUNG, 10, "com.ss.android.ugc.trill") == "uninstalled"
    assert block(runner, "disable", SAMSUNG, 0, "com.tencent.mm") == "disabled"
    assert block(runner, "uninstall", SAMSUNG, 0, "com.zhiliaoapp.musically") == (
        "failed: Failure [DELETE_FAILED_INTERNAL_ERROR]")
    assert [c[-1] for c in calls(log)] == ["com.ss.android.ugc.trill", "com.tencent.mm", "com.zhiliaoapp.musically"]


def test_ios_without_usbmuxd_is_a_note_and_a_broken_tool_an_error(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    commands = {tool: install(tmp_path, tool, {}, log) for tool in ("ideviceinfo", "ideviceinstaller")}
    commands["idevice_id"] = install(tmp_path, "idevice_id", {("-l",): Reply(stderr="idevice_id-no-usbmuxd.txt", exit=255)}, log)
    result = IosCollector().collect(_context(commands))
    assert (result.devices, result.errors) == ([], [])
    assert result.notes == ["usbmuxd is not running, so no iPhone is attached (it starts when one is plugged in)"]
    commands["idevice_id"] = install(tmp_path, "idevice_id", {("-l",): Reply(stderr="idevice_id-broken.txt", exit=127)}, log)
    with pytest.raises(CommandError, match="idevice_id -l: idevice_id: error while loading shared libraries"):
        IosCollector().collect(_context(commands))


def test_ios_a_listing_cut_short_is_an_error_for_that_phone_only(tmp_path: Path) -> None:
    replies = ios_replies("ideviceinstaller-1.2.0-help.txt", ("list", "--xml"))
    replies["ideviceinfo"][("-u", IPHONE_UNTRUSTED, "-x")] = Reply("ideviceinfo-x.xml")
    listing = (FIXTURES / "ideviceinstaller-list.xml").read_text(encoding="utf-8")
    cut = tmp_path / "cut.xml"
    cut.write_text(listing[: len(listing) // 2], encoding="utf-8")
    replies["ideviceinstaller"][("-u", IPHONE_UNTRUSTED, "list", "--xml")] = Reply(str(cut))
    log = tmp_path / "calls.log"
    commands = {tool: install(tmp_path, tool, tool_replies, log) for tool, tool_replies in replies.items()}
    result = IosCollector().collect(_context(commands))
    assert {a.device for a in result.apps} == {IPHONE}
    (error,) = result.errors
    assert error.device == IPHONE_UNTRUSTED and "not an XML plist" in error.message
