"""The preconditions the registry asks before importing a collector (agent/inventory/preconditions.py)
say what the collector's own `unavailable` says, and a source named on the command line still gets
the collector's own answer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agent.config import Config, GatewayConfig
from agent.inventory import PRECONDITIONS, collect, load_collector
from agent.inventory.base import Context
from agent.inventory.preconditions import rpm_dbpath


def _contexts() -> list[Context]:
    gateway_on = Config(gateway=GatewayConfig(enabled=True))
    return [Context(live=True), Context(live=True, config=gateway_on)]


@pytest.mark.parametrize("name", sorted(PRECONDITIONS))
def test_a_precondition_that_rules_a_collector_out_gives_the_collectors_own_reason(name: str) -> None:
    for ctx in _contexts():
        reason = PRECONDITIONS[name](ctx)
        if reason is not None:
            assert load_collector(name).unavailable(ctx) == reason


def test_off_this_os_the_os_collectors_are_ruled_out_and_named_ones_still_say_why() -> None:
    ctx = Context(live=True)
    if sys.platform == "linux":
        assert PRECONDITIONS["windows"](ctx) and PRECONDITIONS["macos"](ctx)
        assert PRECONDITIONS["android"](ctx) == "gateway mode is off (set gateway.enabled: true)"
        assert PRECONDITIONS["intune"](ctx) == "mdm.intune is not configured"
    inventory = collect(ctx, ["windows", "intune"])
    assert {e.collector for e in inventory.errors} >= {"windows", "intune"}
    assert any("not a Windows system" in e.message for e in inventory.errors)


def test_a_precondition_that_raises_is_that_collectors_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ctx: Context) -> str | None:
        raise RuntimeError("boom")

    monkeypatch.setitem(PRECONDITIONS, "windows", broken)
    inventory = collect(Context(live=True), [])
    assert [e.message for e in inventory.errors if e.collector == "windows"] == ["RuntimeError: boom"]
    assert inventory.apps  # the other collectors still ran


@pytest.mark.parametrize("made", ["var/lib/rpm/Packages", "var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/Packages.db"])
def test_the_rpm_precondition_is_the_collectors_whole_answer(tmp_path: Path, made: str) -> None:
    """rpm runs where a database file is in one of its folders: a full check that finds none
    skips it without importing its module (the desktop collector asks the same before it asks
    rpm who owns a launcher)."""
    ctx = Context(root=tmp_path, live=False)
    reason = f"no rpm database under {tmp_path}/usr/lib/sysimage/rpm or {tmp_path}/var/lib/rpm"
    assert PRECONDITIONS["rpm"](ctx) == load_collector("rpm").unavailable(ctx) == reason
    (tmp_path / made).parent.mkdir(parents=True)
    (tmp_path / made).write_text("")
    assert PRECONDITIONS["rpm"](ctx) is None and load_collector("rpm").unavailable(ctx) is None
    assert rpm_dbpath(ctx) == "/" + made.rpartition("/")[0]


@pytest.mark.parametrize("made", ["var/lib/flatpak/app", "home/alice/.local/share/flatpak/app", "root/.local/share/flatpak/app"])
def test_the_flatpak_precondition_rules_it_out_only_where_no_installation_can_be(tmp_path: Path, made: str) -> None:
    """With no installation folder and no declared installations, both say why; with one, both
    say None; with a declarations folder the precondition leaves the question to the collector,
    which reads the declarations."""
    ctx = Context(root=tmp_path, live=False)
    assert PRECONDITIONS["flatpak"](ctx) == load_collector("flatpak").unavailable(ctx) == "no flatpak installation"
    declared = tmp_path / "etc/flatpak/installations.d"
    declared.mkdir(parents=True)
    (declared / "extra.conf").write_text('[Installation "extra"]\nPath=/srv/flatpak\n')
    assert PRECONDITIONS["flatpak"](ctx) is None
    assert load_collector("flatpak").unavailable(ctx) == "no flatpak installation"
    (tmp_path / "srv/flatpak/app").mkdir(parents=True)
    assert load_collector("flatpak").unavailable(ctx) is None
    for conf in declared.iterdir():
        conf.unlink()
    declared.rmdir()
    (tmp_path / made).mkdir(parents=True)
    assert PRECONDITIONS["flatpak"](ctx) is None and load_collector("flatpak").unavailable(ctx) is None


@pytest.mark.parametrize(("name", "made", "folder"), [
    ("pacman", "var/lib/pacman/local", True),
    ("apk", "lib/apk/db/installed", False),
    ("snap", "var/lib/snapd/state.json", False),
    ("snap", "snap", True),
    ("snap", "var/lib/snapd/snap", True),
])
def test_a_database_precondition_is_the_collectors_whole_answer(tmp_path: Path, name: str, made: str,
                                                                 folder: bool) -> None:
    """pacman, apk and snap can run exactly where their database (or a snap mount) is, so a
    full check that finds none skips them without importing their modules: with nothing there,
    or a file where a folder is wanted, both say why; with it, both say None."""
    ctx = Context(root=tmp_path, live=False)
    database = {"pacman": "pacman database at var/lib/pacman/local", "apk": "apk database at lib/apk/db/installed",
                "snap": "snapd state at var/lib/snapd/state.json"}[name]
    reason = f"no {database.replace(' at ', f' at {tmp_path}/')}"
    target = tmp_path / made
    target.parent.mkdir(parents=True, exist_ok=True)
    for wrong_file in (False, True) if folder else (False,):
        if wrong_file:
            target.write_text("")
        assert PRECONDITIONS[name](ctx) == load_collector(name).unavailable(ctx) == reason
    if folder:
        target.unlink()
        target.mkdir()
    else:
        target.write_text("")
    assert PRECONDITIONS[name](ctx) is None and load_collector(name).unavailable(ctx) is None
