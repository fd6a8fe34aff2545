"""The macos collector on a volume of real .app bundle trees (Info.plist written by plistlib in
Apple's binary and XML formats), as a mounted disk would show them."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.inventory.base import Context
from agent.inventory.macos import MacosCollector, PlistError, read_info_plist
from tests.volumes import app_bundle, macos_volume


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return macos_volume(tmp_path_factory.mktemp("macos-volume"))


@pytest.fixture(scope="module")
def collected(volume: Path):
    return MacosCollector().collect(Context(root=volume, live=False))


def bundles(collected) -> dict[str, object]:
    return {a.id: a for a in collected.apps if a.source == "macos"}


def test_binary_plist_with_display_name(collected) -> None:
    wechat = bundles(collected)["com.tencent.xinWeChat"]
    assert (wechat.name, wechat.version, wechat.path, wechat.user) == ("微信", "3.8.10", "/Applications/WeChat.app", "")
    assert wechat.aliases == ("WeChat",)
    assert wechat.extra_value("bundle_version") == "28632"


def test_where_bundles_are_looked_for(collected) -> None:
    found = bundles(collected)
    assert found["com.apple.Terminal"].path == "/Applications/Utilities/Terminal.app"
    assert found["org.mozilla.firefox"].path == "/Users/Shared/Applications/Firefox.app"
    capcut = found["com.lemon.lvoverseas"]
    assert (capcut.user, capcut.path, capcut.version) == ("alice", "/Users/alice/Downloads/CapCut.app", "5.3.0")
    assert found["com.example.notesplus"].user == "bob"
    assert "com.example.toodeep" not in found, "two folder levels below Downloads is beyond the search"
    assert "com.tencent.xinWeChat.helper" not in found, "apps inside a bundle are part of it"


def test_broken_plist_is_one_error_and_the_rest_is_intact(collected) -> None:
    assert [e.message for e in collected.errors] == [
        "/Applications/Broken.app/Contents/Info.plist: malformed property list (ExpatError)"]
    assert len(bundles(collected)) == 5


def test_homebrew_casks_of_both_prefixes(collected) -> None:
    casks = {a.id: a for a in collected.apps if a.source == "brew-cask"}
    assert casks["wechat"].version == "3.8.10,28632"
    assert casks["wechat"].path == "/opt/homebrew/Caskroom/wechat"
    assert casks["firefox"].path == "/usr/local/Caskroom/firefox"


def test_plist_problems_name_the_bundle(tmp_path: Path) -> None:
    empty = app_bundle(tmp_path, "Empty", None)
    with pytest.raises(PlistError, match=r"Empty\.app: no Contents/Info\.plist"):
        read_info_plist(empty)
    listed = app_bundle(tmp_path, "Listed", None)
    (listed / "Contents" / "Info.plist").write_bytes(b"bplist00\x00\x01garbage")
    with pytest.raises(PlistError, match=r"Listed\.app/Contents/Info\.plist: malformed property list"):
        read_info_plist(listed)


def test_availability_follows_the_root_layout(volume: Path, tmp_path: Path) -> None:
    collector = MacosCollector()
    assert collector.unavailable(Context(root=volume, live=False)) is None
    assert "no macOS volume" in collector.unavailable(Context(root=tmp_path, live=False))
    assert "not a macOS system" in collector.unavailable(Context(live=True))


def test_a_malformed_date_in_a_plist_is_a_plist_error(tmp_path: Path) -> None:
    bundle = app_bundle(tmp_path, "Dated", None)
    (bundle / "Contents" / "Info.plist").write_bytes(
        b'<?xml version="1.0"?><plist version="1.0"><dict><key>D</key><date>soon</date></dict></plist>')
    with pytest.raises(PlistError, match=r"Dated\.app/Contents/Info\.plist: malformed property list"):
        read_info_plist(bundle)
