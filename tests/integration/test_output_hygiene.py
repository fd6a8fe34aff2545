"""Control characters from names people control never reach a human-facing sink unescaped
(issue 11, item 15): the text log, `appban quarantine list`, the HTTP reason phrase a list server
sends (shown on stderr), notify-send's arguments; and package ids reach dpkg, rpm, flatpak and
snap after `--`."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest

from agent import log
from agent.enforce.notify import Session, message, notify
from agent.enforce.uninstall import UNINSTALLERS, pin_flatpak
from agent.model import App, Entry
from agent.printable import printable
from agent.runner import Runner
from tests.banlist_fixtures import pki, scripted  # noqa: F401 - fixtures used by name
from tests.conftest import run_cli
from tests.stand_ins import stand_in

FORGED = "WeChat\ninfo enforce.done app=nothing rule=forged\x1b[2J"


def _text_log(event: str, **fields: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log.TextFormatter())
    logger = logging.getLogger("agent.test_output_hygiene")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log.log_event(logger, logging.WARNING, event, **fields)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_newline_in_a_field_cannot_forge_a_log_line() -> None:
    line = _text_log("enforce.refused", app=FORGED, rule="tiktok", note="a=b")
    assert line.count("\n") == 1 and "\x1b" not in line
    assert line.split(" ", 1)[1].startswith('warning enforce.refused app="WeChat\ufffdinfo enforce.done app=nothing')
    assert 'note="a=b"' in line  # a value with `=` is quoted: it cannot pass for another key


def test_the_event_name_is_escaped_too() -> None:
    assert _text_log("x\nwarning forged").count("\n") == 1


def test_quarantine_list_escapes_planted_paths(tmp_path: Path) -> None:
    store = tmp_path / "state" / "quarantine" / "20261201T000000-abcdef"
    store.mkdir(parents=True)
    (store / "manifest.json").write_text(json.dumps({
        "id": "20261201T000000-abcdef", "entry": "wechat", "app": "WeChat", "time": "2026-12-01T00:00:00+00:00",
        "items": [{"original": "/home/eve/evil\nrestored 20261201T999999-000000: /etc/shadow\x1b[2J",
                   "stored": "0-evil", "mode": 0o644, "uid": 0, "gid": 0}],
    }))
    config = tmp_path / "agent.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\n")
    done = run_cli("quarantine", "list", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and "\x1b" not in done.stdout
    assert "/home/eve/evil\ufffdrestored" in done.stdout


def test_a_servers_reason_phrase_is_escaped_on_stderr(tmp_path: Path, pki, scripted) -> None:
    from agent.banlist.signature import generate_keypair

    scripted.script(("reason", (403, "Forbidden\x1b[31m\x07 now")))
    config = tmp_path / "agent.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nbanlist:\n  url: {scripted.url('list.yaml')}\n"
                      f"  ca_bundle: {pki.ca}\n  trusted_keys: ['{generate_keypair()[1].to_base64()}']\n")
    done = run_cli("check", "--config", str(config), "--source", "process",
                   env={"NO_PROXY": "127.0.0.1", "HTTPS_PROXY": "", "https_proxy": ""})
    assert done.returncode == 2
    assert "HTTP 403 Forbidden\ufffd[31m\ufffd now" in done.stderr and "\x1b" not in done.stderr


def test_notify_send_gets_escaped_markup_after_a_double_dash(tmp_path: Path) -> None:
    tool = stand_in(tmp_path / "notify-send")
    entry = Entry(id="wechat", name="-WeChat <b>&", reason="Directive <a href='x'>2023-10</a>\x1b[2J")
    title, body = message(entry, "WeChat\n<i>", "was closed", "it@example.gc.ca")
    shown = notify(Runner(commands={"notify-send": str(tool)}), [Session(os.getuid(), ())], title, body)
    assert shown == 1
    (args,) = tool.calls()
    assert args[:3] == ["--app-name=appban", "--urgency=critical", "--"]
    assert args[3] == "-WeChat <b>& is not allowed on this device"  # the summary is plain text
    assert args[4].startswith("WeChat\ufffd&lt;i&gt; was closed by rule wechat: Directive &lt;a href='x'&gt;")
    assert "\x1b" not in args[4] and "<" not in args[4]


@pytest.mark.parametrize(("source", "expected"), [
    ("dpkg", ["--purge", "--", "-evil"]),
    ("rpm", ["-e", "--", "-evil"]),
    ("flatpak", ["uninstall", "--noninteractive", "-y", "--system", "--", "-evil"]),
    ("snap", ["remove", "--purge", "--", "-evil"]),
])
def test_package_ids_follow_a_double_dash(source: str, expected: list[str]) -> None:
    program, args = UNINSTALLERS[source](App(source=source, id="-evil"), "/")
    assert args == expected


def test_flatpak_mask_puts_the_ref_after_a_double_dash(tmp_path: Path) -> None:
    tool = stand_in(tmp_path / "flatpak")
    pin_flatpak(App(source="flatpak", id="-evil"), "/", "wechat", Runner(commands={"flatpak": str(tool)}))
    assert tool.calls() == [["mask", "--system", "--", "-evil"]]


def test_printable_is_the_identity_on_ordinary_text() -> None:
    assert printable("WeChat 微信 – 3.8 (x86_64)") == "WeChat 微信 – 3.8 (x86_64)"
    assert printable("a\tb\u2028c\x00") == "a\ufffdb\ufffdc\ufffd"

