"""The network blocker on real files in a temporary root: the one cap refuses the change (audited,
file untouched), a symbolic link is not replaced, the written file keeps the hosts file's mode,
and a real unbound loads (and drops) the drop-in through `unbound-control reload`; a reload that
fails (a stand-in) puts the previous file back."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import dns.rcode

from agent.config import Config, EnforcementConfig
from agent.enforce.network import keep_network_block
from agent.enforce.plan import TOO_MANY
from agent.model import App, Device, Finding
from agent.runner import Runner
from tests.conftest import require_tool
from tests.export_support import NOW, QUEBEC, addresses, ask, free_dns_port, quebec
from tests.stand_ins import stand_in

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
    refused = f"refused: {TOO_MANY} (7 removals, max_actions is 5)"
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


def unbound_with_control(folder: Path, port: int) -> Path:
    """An unbound.conf that includes whatever drop-ins exist and takes `unbound-control` on a
    unix socket (no certificates), loopback only, no upstream."""
    (folder / "conf.d").mkdir()
    conf = folder / "unbound.conf"
    conf.write_text(
        f"server:\n    interface: 127.0.0.1\n    port: {port}\n    do-ip6: no\n    do-daemonize: no\n"
        f'    directory: "{folder}"\n    chroot: ""\n    username: ""\n    pidfile: ""\n    use-syslog: no\n'
        '    module-config: "iterator"\n    local-zone: "wikipedia.org." static\n'
        '    local-data: "www.wikipedia.org. A 192.0.2.10"\n'
        f'include: "{folder}/conf.d/*.conf"\n'
        f'remote-control:\n    control-enable: yes\n    control-interface: "{folder}/control.sock"\n'
        "    control-use-cert: no\n")
    return conf


def test_a_drop_in_change_is_loaded_by_a_real_unbound_and_a_failed_reload_restores_the_file(tmp_path: Path) -> None:
    unbound, control = require_tool("unbound"), require_tool("unbound-control")
    port = free_dns_port()
    conf = unbound_with_control(tmp_path, port)
    server = subprocess.Popen([unbound, "-d", "-c", str(conf)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert addresses(ask(port, "www.wikipedia.org")) == ["192.0.2.10"]
        config = Config(state_dir=str(tmp_path / "state"), enforcement=EnforcementConfig(
            mode="block", network="unbound", root=str(tmp_path), network_file="/conf.d/appban.conf",
            network_reload=(control, "-c", str(conf), "reload"), audit_log=str(tmp_path / "audit.jsonl")))
        keep_network_block(blocking(), config, STAFF, Runner(), io.StringIO(), NOW)
        assert ask(port, "tiktokv.com").rcode() == dns.rcode.NXDOMAIN, "unbound-control reload loaded the drop-in"
        assert addresses(ask(port, "www.wikipedia.org")) == ["192.0.2.10"]
        written = (tmp_path / "conf.d" / "appban.conf").read_text()

        failing = stand_in(tmp_path / "reload-fails", exit_code=1, stderr="error: reload failed")
        off = Config(state_dir=config.state_dir, enforcement=EnforcementConfig(
            mode="report", network="unbound", root=str(tmp_path), network_file="/conf.d/appban.conf",
            network_reload=(str(failing),), audit_log=config.enforcement.audit_log))
        keep_network_block(blocking(), off, STAFF, Runner(), io.StringIO(), NOW)
        assert (tmp_path / "conf.d" / "appban.conf").read_text() == written, "a failed reload puts the file back"
        assert events(tmp_path)[-1]["event"] == "failed"

        back = Config(state_dir=config.state_dir, enforcement=EnforcementConfig(
            mode="report", network="unbound", root=str(tmp_path), network_file="/conf.d/appban.conf",
            network_reload=(control, "-c", str(conf), "reload"), audit_log=config.enforcement.audit_log))
        keep_network_block(blocking(), back, STAFF, Runner(), io.StringIO(), NOW)
        assert not (tmp_path / "conf.d" / "appban.conf").exists()
        assert ask(port, "tiktokv.com").rcode() != dns.rcode.NXDOMAIN, "the block is gone from the running resolver"
    finally:
        server.terminate()
        server.wait(timeout=10)
