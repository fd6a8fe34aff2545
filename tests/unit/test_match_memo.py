"""The matcher remembers hits per app identity (fleet inventories repeat apps); that must never
change a result, including when its memory is cleared mid-run."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

import agent.match
from agent.match import compile_banlist, match
from agent.model import App, BanList, Device, Entry, Match

NOW = datetime(2026, 11, 22, tzinfo=timezone.utc)
BANLIST = BanList(format="appban.banlist/v1", serial=1, issued=NOW, entries=(
    Entry(id="tiktok", name="TikTok", match=Match(android=("com.zhiliaoapp.musically",), names=("tiktok*",)),
          applies_to=("staff",), advisory_for=("assembly-members",)),
    Entry(id="old-tiktok", name="Old TikTok", match=Match(android=("com.zhiliaoapp.musically",)), versions="<30"),
))


@pytest.mark.parametrize("memo_size", [1, 100_000])
def test_memo_keeps_per_device_scope_and_versions(monkeypatch: pytest.MonkeyPatch, memo_size: int) -> None:
    monkeypatch.setattr(agent.match, "_MEMO_SIZE", memo_size)
    devices = {"a": Device(id="a", groups=("staff",)), "b": Device(id="b", groups=("assembly-members",)),
               "c": Device(id="c", groups=("other",))}
    apps = [App(source="android", id="com.zhiliaoapp.musically", name="TikTok", version=v, device=d)
            for d, v in (("a", "33.1"), ("b", "29.0"), ("c", "29.0"), ("a", "29.0"))]
    apps.insert(2, App(source="android", id="com.other", name="Other", device="a"))
    found = [(f.device, f.entry.id, f.status, f.app.version) for f in match(apps, devices, compile_banlist(BANLIST), NOW)]
    assert found == [
        ("a", "old-tiktok", "violation", "29.0"),
        ("a", "tiktok", "violation", "29.0"), ("a", "tiktok", "violation", "33.1"),
        ("b", "old-tiktok", "violation", "29.0"), ("b", "tiktok", "advisory", "29.0"),
        ("c", "old-tiktok", "violation", "29.0"),
    ]
