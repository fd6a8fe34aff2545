"""The table's per-device headings (agent.report.render)."""

from __future__ import annotations

from datetime import datetime, timezone

from agent.model import App, BanListInfo, Device, Entry, Finding, Inventory, Report
from agent.report.render import device_heading, render_table

PHONE = Device(
    id="R58M31ABCDE", hostname="o1sxeea", kind="android", os="Android 14 (SDK 34)", groups=("staff", "comms"),
    attributes=(("manufacturer", "samsung"), ("model", "SM-G991B"), ("serial", "R58M31ABCDE")),
)


def test_heading_names_kind_id_model_os_groups_and_apps() -> None:
    assert device_heading(PHONE, 212) == (
        "== android · R58M31ABCDE · o1sxeea · samsung SM-G991B · Android 14 (SDK 34) · groups: staff, comms · 212 app(s)")
    iphone = Device(id="00008030-001A35E11E88802E", kind="ios", attributes=(("serial", "F2LZK0ABN72J"),))
    assert device_heading(iphone, 0) == "== ios · 00008030-001A35E11E88802E · serial F2LZK0ABN72J · no groups · 0 app(s)"


def test_each_device_with_findings_gets_its_heading_before_its_rows() -> None:
    entry = Entry(id="tiktok", name="TikTok")
    apps = (App(source="android", id="com.zhiliaoapp.musically", device=PHONE.id),
            App(source="android", id="com.x", device=PHONE.id),
            App(source="ios", id="com.zhiliaoapp.musically", device="ipad-1"))
    report = Report(
        id="r", generated=datetime(2026, 11, 22, tzinfo=timezone.utc), agent_version="0",
        banlist=BanListInfo(serial=1, source="test", signed=True),
        inventory=Inventory(devices=(PHONE, Device(id="ipad-1", kind="ios"), Device(id="clean", kind="ios")), apps=apps),
        findings=(Finding("violation", entry, apps[2], "ipad-1", "ios:x"),
                  Finding("violation", entry, apps[0], PHONE.id, "android:x")),
    )
    lines = render_table(report).splitlines()
    headings = [n for n, line in enumerate(lines) if line.startswith("== ")]
    assert [lines[n].split(" · ")[1] for n in headings] == ["ipad-1", "R58M31ABCDE"]
    assert lines[headings[1] + 1] == "   groups: staff, comms · 2 app(s)"  # a long heading wraps, indented
    assert lines[headings[0] + 1].startswith("violation") and lines[headings[1] + 2].startswith("violation")


def test_control_characters_from_collected_names_never_reach_the_terminal() -> None:
    entry = Entry(id="tiktok", name="TikTok")
    app = App(source="mdm", id="x", name="TikTok\x1b[2J\nCOMPLIANT: 0 violation", path="/tmp/a\rb", device="phone\x07")
    report = Report(
        id="r", generated=datetime(2026, 11, 22, tzinfo=timezone.utc), agent_version="0",
        banlist=BanListInfo(serial=1, source="test", signed=True),
        inventory=Inventory(devices=(Device(id="phone\x07", hostname="h\x1b]0;x\x07"),), apps=(app,),
                            notes=("n\x1b[1m",)),
        findings=(Finding("violation", entry, app, "phone\x07", "names:tiktok*"),),
    )
    text = render_table(report)
    assert not [c for c in text if not c.isprintable() and c != "\n"]
    assert [line for line in text.splitlines() if line.startswith("COMPLIANT")] == []


def test_a_report_with_nothing_read_says_no_verdict_not_compliant() -> None:
    from datetime import datetime, timezone

    from agent.model import BanListInfo, CollectorError, Device, Inventory, Report
    from agent.report.render import render_table

    inventory = Inventory(devices=(Device(id="pc"),), apps=(), errors=(CollectorError("dpkg", "unreadable"),))
    report = Report("r", datetime.now(timezone.utc), "0", BanListInfo(1, "x", False), inventory, ())
    assert render_table(report).splitlines()[-1].startswith("NO VERDICT (nothing could be read)")
