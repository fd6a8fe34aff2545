"""The table as a terminal shows it (agent.report.render, agent.report.textwidth): CJK names
take two columns and still line up, COLUMNS is honoured, a rule's reason is given once."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from agent.model import App, BanListInfo, Device, Entry, Finding, Inventory, Report
from agent.report.render import render_apps, render_table
from agent.report.textwidth import fit, terminal_width, width, wrap

HOST = Device(id="desk-17", kind="host")
WECHAT = Entry(id="wechat", name="WeChat", reason="Canada TBS, 2023-10-30: unacceptable risk to privacy and security")
APPS = (App(source="windows", id="WeChat", name="微信", version="3.9.12.51", device=HOST.id, user="张伟"),
        App(source="windows", id="WeChatSetup", name="WeChat", version="3.9", device=HOST.id),
        App(source="windows", id="Weixin", name="腾讯微信 Weixin 全家桶 超长的名字", device=HOST.id),
        App(source="process", id="wechat.exe", name="wechat.exe", device=HOST.id))


def report() -> Report:
    return Report(
        id="r", generated=datetime(2026, 11, 22, tzinfo=timezone.utc), agent_version="0",
        banlist=BanListInfo(serial=1, source="test", signed=True),
        inventory=Inventory(devices=(HOST,), apps=APPS),
        findings=tuple(Finding("violation", WECHAT, app, HOST.id, "windows:x") for app in APPS[:3]),
    )


def column_of(line: str, text: str) -> int:
    """The display column where `text` starts in `line`."""
    return width(line[:line.index(text)])


@pytest.mark.parametrize("columns", [60, 80, 132])
def test_rows_with_cjk_names_line_up_and_fit(columns: int) -> None:
    lines = render_table(report(), columns).splitlines()
    rows = [line for line in lines if line.startswith("violation")]
    assert len(rows) == 3
    assert len({column_of(row, "windows") for row in rows}) == 1, rows
    assert len({column_of(row, "wechat") for row in rows}) == 1, rows
    assert all(width(line) <= columns for line in lines), [line for line in lines if width(line) > columns]


def test_a_wider_terminal_shows_more_of_a_long_name() -> None:
    narrow = next(r for r in render_table(report(), 80).splitlines() if "腾讯" in r)
    wide = next(r for r in render_table(report(), 160).splitlines() if "腾讯" in r)
    assert "…" in narrow and "超长的名字" in wide


def test_a_rules_reason_is_given_once_not_under_every_finding() -> None:
    text = render_table(report())
    assert text.count("unacceptable risk") == 1
    assert "wechat — WeChat: Canada TBS" in text


def test_the_app_table_lists_installed_apps_not_processes_and_lines_up() -> None:
    lines = render_apps(Inventory(devices=(HOST,), apps=APPS), 80).splitlines()
    assert lines[0].split() == ["APP", "VERSION", "SOURCE", "USER", "DEVICE"]
    assert len(lines) == 4 and not any("wechat.exe" in line for line in lines)
    assert len({column_of(line, "windows") for line in lines[1:]}) == 1
    assert any("张伟" in line for line in lines) and all(width(line) <= 80 for line in lines)


def test_terminal_width_honours_columns_with_a_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "132")
    assert terminal_width() == 132
    monkeypatch.setenv("COLUMNS", "20")
    assert terminal_width() == 60


def test_width_fit_and_wrap_count_columns_not_code_points() -> None:
    assert (width("微信"), width("e\u0301"), width("a\u200db")) == (4, 1, 2)
    assert fit("微信微信微信", 7) == "微信微…" and width(fit("微信", 7)) == 7
    assert all(width(line) <= 10 for line in wrap("微信微信微信微信 WeChat WeChat", 10, "  ", "    "))
