"""Files enforcement leaves for other tools, checked with those tools where they exist here:
the APT pin against the real `apt-cache policy`, the fapolicyd rule checker against the sample
rules Debian's fapolicyd ships (recorded in tests/fixtures), rule installation and reload (a stand-in `fagenrules`,
since the real one only works on /etc), and notifications reaching a (stand-in) notify-send in
a session discovered from the real /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.stand_ins import stand_in
from agent.enforce.deny import DenySet
from agent.enforce.fapolicyd import RulesError, check_rules, install_rules, render_rules
from agent.enforce.notify import desktop_sessions, notify
from agent.enforce.uninstall import pin_apt
from agent.model import App
from agent.runner import CommandError, Runner
from enforce_support import need

SAMPLE_RULES = Path(__file__).parents[1] / "fixtures/fapolicyd-1.1.7-sample.rules"


def test_apt_honours_the_pin(tmp_path: Path) -> None:
    apt_cache = need("apt-cache")
    package = "dpkg-dev"  # installed by scripts/test, so APT always knows it
    written = Path(pin_apt(App(source="dpkg", id=package), str(tmp_path), "test-entry", Runner()))
    assert written == tmp_path / f"etc/apt/preferences.d/appban-{package}"

    def candidate(*options: str) -> str:
        out = subprocess.run([apt_cache, *options, "policy", package], capture_output=True, text=True, timeout=60).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if "Candidate:" in line)

    assert candidate() != "(none)"
    assert candidate("-o", f"Dir::Etc::PreferencesParts={written.parent}") == "(none)"


def test_checker_accepts_the_rules_fapolicyd_ships() -> None:
    checked = 0
    for line in SAMPLE_RULES.read_text().splitlines():
        if line.startswith(("#", "%")) or " path= " in line + " ":
            continue  # set definitions (never written by appban); Debian's empty ld.so path
        check_rules(line)
        checked += 1
    assert checked > 20


def test_rules_are_written_reloaded_and_never_replace_a_good_file_when_bad(tmp_path: Path) -> None:
    good = stand_in(tmp_path / "fagenrules")
    rules = tmp_path / "etc/fapolicyd/rules.d/15-appban.rules"
    text, _ = render_rules(DenySet(paths={"/usr/bin/wps": "wps"}))
    assert install_rules(rules, text, Runner({"fagenrules": str(good)})) is True
    assert rules.read_text() == text
    assert good.calls() == [["--load"]]
    assert install_rules(rules, text, Runner({"fagenrules": str(good)})) is False  # unchanged: no reload
    assert good.calls() == [["--load"]]

    with pytest.raises(RulesError):
        install_rules(rules, text + "deny perm=execute all path=/x\n", Runner({"fagenrules": str(good)}))
    assert rules.read_text() == text

    failing = stand_in(tmp_path / "fagenrules-failing", stderr="bad rule\n", exit_code=1)
    newer, _ = render_rules(DenySet(paths={"/usr/bin/wps": "wps", "/usr/bin/wpp": "wps"}))
    with pytest.raises(CommandError, match="bad rule"):
        install_rules(rules, newer, Runner({"fagenrules": str(failing)}))
    assert rules.read_text() == text


def test_notification_reaches_each_graphical_session(tmp_path: Path) -> None:
    # A bus and display of this run only: concurrent runs of the suite share /proc.
    bus, display = f"unix:path={tmp_path}/bus", f":{os.getpid() % 50000 + 1000}"
    session = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={"PATH": os.environ["PATH"], "DBUS_SESSION_BUS_ADDRESS": bus, "DISPLAY": display},
    )
    try:
        deadline = time.monotonic() + 30  # until the child has exec'd, /proc shows the parent's environment
        while not (sessions := [s for s in desktop_sessions() if ("DISPLAY", display) in s.env]) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(sessions) == 1
        sender = stand_in(tmp_path / "notify-send")
        assert notify(Runner({"notify-send": str(sender)}), sessions, "WPS Office is not allowed", "body") == 1
        assert sender.calls() == [["--app-name=appban", "--urgency=critical", "--", "WPS Office is not allowed", "body"]]
        assert sender.environments()[0]["DBUS_SESSION_BUS_ADDRESS"] == bus
    finally:
        session.kill()
        session.wait()
