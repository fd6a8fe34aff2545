"""`appban check` with the cap under its old name: one warning line on stderr, the check runs;
both names with different values: exit 2 and one line."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def _check(tmp_path: Path, enforcement: str):
    config = tmp_path / "agent.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\ninventory:\n  sources: [dpkg]\nenforcement:\n{enforcement}")
    return run_cli("check", "--config", str(config), "--root", str(tmp_path / "empty"), timeout=120)


def test_the_old_name_warns_once_and_the_check_runs(tmp_path: Path) -> None:
    (tmp_path / "empty" / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "empty" / "var/lib/dpkg/status").write_text("")
    done = _check(tmp_path, "  max_removals: 3\n")
    warnings = [line for line in done.stderr.splitlines() if "deprecated" in line]
    assert len(warnings) == 1 and "enforcement.max_removals" in warnings[0] and "enforcement.max_actions" in warnings[0]
    assert done.returncode == 0, done.stderr


def test_both_names_that_differ_are_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = _check(tmp_path, "  max_removals: 3\n  max_actions: 4\n")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "keep only 'enforcement.max_actions'" in done.stderr
