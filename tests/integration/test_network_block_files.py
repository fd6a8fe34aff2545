"""The network blocker on real files in a temporary root: the one cap refuses the change (audited,
file untouched), a symbolic link is not replaced, and the written file keeps the hosts file's mode."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from agent.config import Config, EnforcementConfig
from agent.enforce.network import keep_network_block
from agent.enforce.plan import TOO_MANY
from agent.model import App, Device, Finding
from agent.runner import Runner
from tests.export_support import NOW, QUEBEC, quebec

HOSTS = "127.0.0.1 localhost\n"
STAFF = Device(id="pc-1", groups=("staff",))


def setup(tmp_path: Path) -> tuple[Config, Path]:
    hosts = tmp_path / "root" / "etc" / "hosts"
    hosts.parent.mkdir(parents=True)
    hosts.write_text(HOSTS)
    os.chmod(hosts, 0o640)
    config = Config(state_dir=str(tmp_path / "state"), enforcement=EnforcementConfig(
        mode="block", network="hosts", root=str(tmp_path / "root"), audit_log=str(tmp_path / "audit.jsonl")))
    return config, hosts


def blocking():
    return quebec(entries=[{**QUEBEC["entries"][0], "action": "block"}])


def events(tmp_path: Path) -> list[dict]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_cap_refuses_the_change_and_says_so(tmp_path: Path) -> None:
    config, hosts = setup(tmp_path)
    refused = f"refused: {TOO_MANY} (7 removals, max_removals is 5)"
    capped = [Finding("violation", blocking().entries[0], App(source="dpkg", id="x"), "pc-1", "deb:x", outcome=refused)]
    change = keep_network_block(blocking(), config, STAFF, Runner(), io.StringIO(), NOW, capped)
    assert change is not None and change.refused
    assert hosts.read_text() == HOSTS
    assert [e["event"] for e in events(tmp_path)] == ["refused"]


def test_the_block_is_written_with_the_files_mode_and_a_dry_run_writes_nothing(tmp_path: Path) -> None:
    config, hosts = setup(tmp_path)
    out = io.StringIO()
    keep_network_block(blocking(), config, STAFF, Runner(), out, NOW, dry_run=True)
    assert "enforcement plan: write 3 blocked names to" in out.getvalue() and hosts.read_text() == HOSTS
    keep_network_block(blocking(), config, STAFF, Runner(), io.StringIO(), NOW)
    assert "0.0.0.0 tiktokv.com" in hosts.read_text() and hosts.stat().st_mode & 0o777 == 0o640


def test_a_symbolic_link_is_not_replaced(tmp_path: Path) -> None:
    config, hosts = setup(tmp_path)
    real = tmp_path / "elsewhere-hosts"
    real.write_text(HOSTS)
    hosts.unlink()
    hosts.symlink_to(real)
    keep_network_block(blocking(), config, STAFF, Runner(), io.StringIO(), NOW)
    assert hosts.is_symlink() and real.read_text() == HOSTS
    assert events(tmp_path)[0]["event"] == "failed" and "symbolic link" in events(tmp_path)[0]["outcome"]
