"""`appban check --enforce [--dry-run]` as a subprocess, against real .deb packages installed with
the real dpkg into a throwaway root: the dry run changes nothing, enforcement removes and pins the
banned package (and `dpkg -s` agrees), an essential package is refused, the cap refuses all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))
from enforce_support import (  # noqa: E402
    banlist_yaml, build_deb, config_yaml, dpkg, installed, make_dpkg_root, need, need_root, unique,
)

TOP = Path(__file__).parents[2]


@pytest.fixture
def system(tmp_path: Path) -> dict:
    """A throwaway root with a banned app package and a banned *essential* package installed."""
    need_root()
    need("dpkg")
    root = make_dpkg_root(tmp_path / "sys")
    wps, core = unique("appban-test-wps"), unique("appban-test-core")
    exe = wps.replace("appban-test-", "")
    for package, programs, essential in ((wps, {exe: Path("/bin/sleep")}, False), (core, {core: b"#!/bin/sh\n"}, True)):
        done = dpkg(root, "-i", str(build_deb(tmp_path, package, programs, essential)))
        assert done.returncode == 0, done.stderr
    banlist = tmp_path / "banlist.yaml"
    banlist.write_text(banlist_yaml([
        {"id": "wps-office", "match": {"deb": [wps], "executables": [exe]}},
        {"id": "core-thing", "match": {"deb": [core]}},
    ]))
    return {"root": root, "wps": wps, "core": core, "banlist": banlist, "state": tmp_path / "state", "tmp": tmp_path}


def appban(system: dict, *args: str, **enforcement: object) -> subprocess.CompletedProcess[str]:
    config = system["tmp"] / "agent.yaml"
    config.write_text(config_yaml(system["root"], system["state"], **enforcement))
    return subprocess.run(
        [sys.executable, "-m", "agent", "check", "--config", str(config), "--banlist", str(system["banlist"]), *args],
        cwd=TOP, capture_output=True, text=True, timeout=120,
    )


def audit(system: dict) -> list[dict]:
    path = system["state"] / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_dry_run_prints_the_plan_and_changes_nothing(system: dict) -> None:
    done = appban(system, "--enforce", "--dry-run")
    assert done.returncode == 1, done.stderr
    assert f"uninstall dpkg package {system['wps']} [entry wps-office]" in done.stdout
    assert f"uninstall dpkg package {system['core']} [entry core-thing] — refused: essential package" in done.stdout
    assert installed(system["root"], system["wps"]) and installed(system["root"], system["core"])
    assert not (system["root"] / "etc/apt/preferences.d").exists()
    assert {e["event"] for e in audit(system)} == {"dry-run", "refused"}


def test_enforcement_removes_pins_and_refuses_the_essential_package(system: dict) -> None:
    done = appban(system, "--enforce", "--format", "json")
    assert done.returncode == 1, done.stderr
    outcomes = {f["app"]["id"]: f["outcome"] for f in json.loads(done.stdout)["findings"]}
    assert outcomes == {system["wps"]: "removed", system["core"]: "refused: essential package"}
    assert not installed(system["root"], system["wps"])
    assert installed(system["root"], system["core"])
    pin = (system["root"] / f"etc/apt/preferences.d/appban-{system['wps']}").read_text()
    assert f"Package: {system['wps']}\nPin: version *\nPin-Priority: -1" in pin
    events = [(e["event"], e.get("target")) for e in audit(system)]
    assert ("planned", system["wps"]) in events and ("done", system["wps"]) in events
    assert ("refused", system["core"]) in events


def test_report_mode_never_blocks_even_with_a_blocking_list(system: dict) -> None:
    done = appban(system, "--enforce", mode="report")
    assert "enforcement.mode is report" not in done.stdout  # printed only by a dry run
    assert installed(system["root"], system["wps"])
    assert audit(system) == []
    assert "appban: --enforce: the local config has enforcement.mode: report, so nothing is blocked" in done.stderr


def test_block_mode_does_not_warn_about_report_mode(system: dict) -> None:
    done = appban(system, "--enforce", "--dry-run")
    assert "enforcement.mode: report" not in done.stderr


def test_protected_list_wins(system: dict) -> None:
    done = appban(system, "--enforce", "--format", "json", protected=[system["wps"]])
    outcomes = {f["app"]["id"]: f["outcome"] for f in json.loads(done.stdout)["findings"]}
    assert outcomes[system["wps"]] == "refused: protected by local config"
    assert installed(system["root"], system["wps"])


def test_too_many_removals_are_all_refused(system: dict) -> None:
    done = appban(system, "--enforce", "--dry-run", max_actions=0)
    assert "too many — refused (1 actions: 1 uninstall; max_actions is 0 and covers every kind of action)" in done.stdout
    done = appban(system, "--enforce", max_actions=0)
    assert installed(system["root"], system["wps"])


def test_enforce_with_saved_inventory_is_a_user_error(system: dict, tmp_path: Path) -> None:
    done = appban(system, "--enforce", "--inventory", str(tmp_path / "saved-inventory.json"))
    assert done.returncode == 2
    assert done.stderr.strip() == "appban: --enforce acts on this machine; it cannot be used with --inventory"


def test_removal_never_cascades_to_packages_that_depend_on_the_banned_one(system: dict) -> None:
    dependant = unique("appban-test-needs-wps")
    deb = build_deb(system["tmp"], dependant, {dependant: b"#!/bin/sh\n"}, depends=system["wps"])
    assert dpkg(system["root"], "-i", str(deb)).returncode == 0
    done = appban(system, "--enforce", "--format", "json")
    outcome = {f["app"]["id"]: f["outcome"] for f in json.loads(done.stdout)["findings"]}[system["wps"]]
    assert outcome.startswith("failed: dpkg --dry-run") and "dependency problems" in outcome
    assert installed(system["root"], system["wps"]) and installed(system["root"], dependant)


def test_enforce_refuses_to_act_on_another_system_than_it_read(system: dict) -> None:
    done = appban(system, "--enforce", "--root", str(system["tmp"]))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"appban: --enforce acts on enforcement.root ({system['root']}) "
                                   f"but the inventory was read from {system['tmp']}")
    assert installed(system["root"], system["wps"])
