"""On-device network blocking end to end, on a temporary root (never the real /etc/hosts):
`appban check --enforce` and `--dry-run` with `enforcement.network: hosts`, the service keeping
the managed block in step and taking it back (file restored byte for byte) when blocking is
turned off, and an unbound drop-in checked by the real unbound-checkconf."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import yaml

from tests.conftest import require_tool, run_cli
from tests.service_support import Daemon, wait_until, write_config

HOSTS = "127.0.0.1\tlocalhost\n# corporate names below, kept by hand\n10.1.2.3 intranet.corp"
BLOCKING = """\
format: appban.banlist/v1
serial: 9
issued: 2026-01-01T00:00:00Z
entries:
  - id: tiktok
    name: TikTok
    action: block
    applies_to: [staff]
    match:
      domains: ["*.tiktokv.com", tiktok.com]
"""


def tree(tmp_path: Path, network: str = "hosts", mode: str = "block", **enforcement: object) -> tuple[Path, Path]:
    """Return (config, root) for a machine image in tmp_path with a hand-kept hosts file."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hosts").write_text(HOSTS)
    (root / "var" / "lib" / "dpkg").mkdir(parents=True)
    (root / "var" / "lib" / "dpkg" / "status").write_text("")
    (tmp_path / "list.yaml").write_text(BLOCKING)
    config = write_config(
        tmp_path, banlist={"path": str(tmp_path / "list.yaml")},
        inventory={"root": str(root), "sources": ["dpkg"]},
        enforcement={"mode": mode, "root": str(root), "guard": "off", "notify": False, "network": network,
                     **enforcement},
    )
    return config, root


def audit(tmp_path: Path) -> list[dict]:
    path = tmp_path / "state" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_check_enforce_writes_the_block_and_dry_run_only_says_so(tmp_path: Path) -> None:
    config, root = tree(tmp_path)
    dry = run_cli("check", "--config", str(config), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"enforcement plan: write 2 blocked names to {root}/etc/hosts" in dry.stdout
    assert (root / "etc" / "hosts").read_text() == HOSTS
    done = run_cli("check", "--config", str(config), "--enforce")
    assert done.returncode == 0, done.stderr
    hosts = (root / "etc" / "hosts").read_text()
    assert hosts.startswith(HOSTS + "\n# BEGIN appban managed block")
    assert "\n0.0.0.0 tiktok.com\n:: tiktok.com\n0.0.0.0 tiktokv.com\n:: tiktokv.com\n# END appban" in hosts
    assert [e["event"] for e in audit(tmp_path) if e.get("action") == "network-block"] == ["done"]
    again = run_cli("check", "--config", str(config), "--enforce")
    assert again.returncode == 0 and (root / "etc" / "hosts").read_text() == hosts
    assert len([e for e in audit(tmp_path) if e.get("action") == "network-block"]) == 1, "unchanged: no write"


def test_a_group_out_of_scope_gets_no_block(tmp_path: Path) -> None:
    config, root = tree(tmp_path)
    done = run_cli("check", "--config", str(config), "--enforce", "--group", "deputies")
    assert done.returncode == 0, done.stderr
    assert (root / "etc" / "hosts").read_text() == HOSTS


def test_the_service_keeps_the_block_and_takes_it_back_when_blocking_is_turned_off(tmp_path: Path) -> None:
    config, root = tree(tmp_path)
    hosts = root / "etc" / "hosts"
    daemon = Daemon(config)
    try:
        wait_until(lambda: "0.0.0.0 tiktokv.com" in hosts.read_text(), timeout=60)
        document = yaml.safe_load(config.read_text())
        document["enforcement"]["mode"] = "report"
        config.write_text(yaml.safe_dump(document))
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: hosts.read_text() == HOSTS, timeout=60)
        # The audit line follows the write: wait for it rather than race the service to it.
        wait_until(lambda: len([e for e in audit(tmp_path) if e.get("action") == "network-block"]) == 2, timeout=60)
    finally:
        daemon.stop()
    events = [e["event"] for e in audit(tmp_path) if e.get("action") == "network-block"]
    assert events == ["done", "done"]


def test_an_unbound_drop_in_is_read_by_unbound_checkconf(tmp_path: Path) -> None:
    checkconf = require_tool("unbound-checkconf")
    config, root = tree(tmp_path, network="unbound")
    done = run_cli("check", "--config", str(config), "--enforce")
    assert done.returncode == 0, done.stderr
    dropin = root / "etc" / "unbound" / "unbound.conf.d" / "appban.conf"
    assert 'local-zone: "tiktokv.com." always_nxdomain' in dropin.read_text()
    main = tmp_path / "unbound.conf"
    main.write_text(f'server:\n    directory: "{tmp_path}"\n    chroot: ""\n    username: ""\n    pidfile: ""\n'
                    f'include: "{dropin}"\n')
    checked = subprocess.run([checkconf, str(main)], capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    document = yaml.safe_load(config.read_text())
    document["enforcement"]["mode"] = "report"
    config.write_text(yaml.safe_dump(document))
    assert run_cli("check", "--config", str(config), "--enforce").returncode == 0
    assert not dropin.exists(), "nothing banned any more: appban's drop-in is removed"


def test_someone_elses_drop_in_is_never_replaced(tmp_path: Path) -> None:
    config, root = tree(tmp_path, network="dnsmasq")
    theirs = root / "etc" / "dnsmasq.d" / "appban.conf"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("server=192.0.2.53\n")
    done = run_cli("check", "--config", str(config), "--enforce")
    assert done.returncode == 0, done.stderr
    assert theirs.read_text() == "server=192.0.2.53\n"
    failed = [e for e in audit(tmp_path) if e.get("action") == "network-block"]
    assert failed and failed[0]["event"] == "failed" and "not written by appban" in failed[0]["outcome"]
