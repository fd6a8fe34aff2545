"""Exports read by the engines' own parsers: unbound-checkconf, dnsmasq --test, named-checkzone,
nft -c and fapolicyd's rule loader; real resolvers (unbound, dnsmasq) started on a loopback port
with the generated config, asked over DNS (dnspython) for a banned and an unbanned name; and, in a
network namespace of its own, dnsmasq filling the nftables table's set as it resolves a name.

Nothing here touches the machine's own resolver or /etc/fapolicyd: resolvers get their own config
in a temp dir and a free 127.0.0.1 port; fapolicyd runs in a private mount namespace where a temp
dir is bind-mounted over /etc/fapolicyd, /var/lib/fapolicyd and /run, watching no file system.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import dns.rcode
import pytest

from agent.export import renderer
from tests.conftest import REPO, require_tool
from tests.export_support import addresses, ask, chosen, free_dns_port, quebec, with_exceptions

TIMEOUT = 60
UNBANNED = "www.wikipedia.org"
UNBANNED_ADDRESS = "192.0.2.10"


def export(kind: str, *groups: str, banlist=None) -> str:
    return renderer(kind)(chosen(banlist or quebec(), *groups)).text


def checked(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[subprocess.Popen]]:
    """Processes started by a test, stopped (by pid) at its end."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def unbound_conf(folder: Path, port: int, include: Path) -> Path:
    """A self-contained unbound.conf: loopback only, no privilege drop, no upstream (the
    unbanned name is a local zone, since this machine has no network)."""
    conf = folder / "unbound.conf"
    conf.write_text(
        "server:\n"
        f"    interface: 127.0.0.1\n    port: {port}\n    do-ip6: no\n    do-daemonize: no\n"
        f'    directory: "{folder}"\n    chroot: ""\n    username: ""\n    pidfile: ""\n'
        '    use-syslog: no\n    logfile: ""\n    module-config: "iterator"\n'
        '    local-zone: "wikipedia.org." static\n'
        f'    local-data: "{UNBANNED}. A {UNBANNED_ADDRESS}"\n'
        f'include: "{include}"\n'
    )
    return conf


def test_unbound_checkconf_accepts_the_export(tmp_path: Path) -> None:
    checkconf = require_tool("unbound-checkconf")
    include = tmp_path / "appban.conf"
    include.write_text(export("unbound", "staff"))
    done = checked([checkconf, str(unbound_conf(tmp_path, free_dns_port(), include))])
    assert done.returncode == 0, done.stdout + done.stderr
    include.write_text(export("unbound", "staff") + '    local-zone: "broken always_nxdomain\n')
    assert checked([checkconf, str(unbound_conf(tmp_path, 5353, include))]).returncode != 0, "the check can fail"


def test_dnsmasq_test_accepts_the_export(tmp_path: Path) -> None:
    dnsmasq = require_tool("dnsmasq")
    conf = tmp_path / "appban.conf"
    conf.write_text(export("dnsmasq", "staff"))
    done = checked([dnsmasq, "--test", f"--conf-file={conf}"])
    assert done.returncode == 0 and "syntax check OK" in done.stdout + done.stderr, done.stdout + done.stderr
    conf.write_text(export("dnsmasq", "staff") + "address=/bad\n")
    assert checked([dnsmasq, "--test", f"--conf-file={conf}"]).returncode != 0


@pytest.mark.parametrize("groups", [("staff",), ("deputies",)])
def test_named_checkzone_loads_the_rpz_as_zone_appban_rpz(tmp_path: Path, groups: tuple[str, ...]) -> None:
    checkzone = require_tool("named-checkzone")
    zone = tmp_path / "appban.rpz"
    zone.write_text(export("rpz", *groups))
    done = checked([checkzone, "appban.rpz", str(zone)])
    assert done.returncode == 0 and "loaded serial 42" in done.stdout, done.stdout + done.stderr


def test_unbound_started_with_the_export_answers_nxdomain_for_banned_names(tmp_path: Path, served: list) -> None:
    unbound = require_tool("unbound")
    port = free_dns_port()
    include = tmp_path / "appban.conf"
    include.write_text(export("unbound", "staff"))
    served.append(subprocess.Popen([unbound, "-d", "-c", str(unbound_conf(tmp_path, port, include))],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    unbanned = ask(port, UNBANNED)
    assert unbanned.rcode() == dns.rcode.NOERROR and addresses(unbanned) == [UNBANNED_ADDRESS]
    for name in ("tiktokv.com", "api16-normal-c-useast1a.tiktokv.com", "log.byteoversea.com"):
        assert ask(port, name).rcode() == dns.rcode.NXDOMAIN, name


def test_dnsmasq_started_with_the_export_answers_null_addresses_for_banned_names(tmp_path: Path, served: list) -> None:
    dnsmasq = require_tool("dnsmasq")
    port = free_dns_port()
    conf = tmp_path / "appban.conf"
    conf.write_text(export("dnsmasq", "staff"))
    served.append(subprocess.Popen(
        [dnsmasq, "--keep-in-foreground", f"--conf-file={conf}", f"--port={port}", "--listen-address=127.0.0.1",
         "--bind-interfaces", "--no-resolv", "--no-hosts", "--pid-file", "--user=root",
         f"--address=/{UNBANNED}/{UNBANNED_ADDRESS}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    assert addresses(ask(port, UNBANNED)) == [UNBANNED_ADDRESS]
    for name in ("tiktokv.com", "www.tiktok.com"):
        assert addresses(ask(port, name)) == ["0.0.0.0"], name


def test_deputies_export_resolves_everything(tmp_path: Path, served: list) -> None:
    """The advisory group's file blocks nothing: the same resolver answers the banned name."""
    unbound = require_tool("unbound")
    port = free_dns_port()
    include = tmp_path / "appban.conf"
    include.write_text(export("unbound", "deputies") +
                       '    local-zone: "tiktokv.com." static\n    local-data: "tiktokv.com. A 192.0.2.20"\n')
    served.append(subprocess.Popen([unbound, "-d", "-c", str(unbound_conf(tmp_path, port, include))],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    assert addresses(ask(port, "tiktokv.com")) == ["192.0.2.20"]


def fapolicyd_load(tmp_path: Path, rules: str) -> subprocess.CompletedProcess[str]:
    """Start the real fapolicyd (permissive, debug, watching no file system) in a private mount
    namespace on a temp copy of its folders, so it parses `rules` as its compiled.rules and
    stops: it exits by itself once past the rules, or is stopped by the timeout."""
    daemon = require_tool("fapolicyd")
    if os.geteuid() != 0:
        pytest.skip("fapolicyd's rule loader needs root (mount namespace)")
    etc, lib, run = tmp_path / "etc", tmp_path / "lib", tmp_path / "run"
    for folder in (etc / "rules.d", etc / "trust.d", lib, run / "fapolicyd"):
        folder.mkdir(parents=True)
    (etc / "fapolicyd.conf").write_text(
        "permissive = 1\nnice_val = 14\nq_size = 640\nuid = fapolicyd\ngid = fapolicyd\ndo_stat_report = 0\n"
        "db_max_size = 8\nsubj_cache_size = 1549\nobj_cache_size = 8191\nwatch_fs = iso9660\ntrust = file\n"
        "integrity = none\nsyslog_format = rule,dec,perm,auid,pid,exe,:,path,ftype,trust\n")
    (etc / "fapolicyd.trust").write_text("")
    (etc / "compiled.rules").write_text(rules)
    script = (f"mount --make-rprivate / && mount --bind {etc} /etc/fapolicyd && "
              f"mount --bind {lib} /var/lib/fapolicyd && mount --bind {run} /run && exec {daemon} --debug --permissive")
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=20,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:  # it got past the rules and kept running: that is a load too
        return subprocess.CompletedProcess(exc.cmd, 0, exc.stdout or "", (exc.stderr or b"").decode()
                                           if isinstance(exc.stderr, bytes) else exc.stderr or "")


def test_fapolicyd_loads_the_exported_rules(tmp_path: Path) -> None:
    if not Path("/var/lib/fapolicyd").is_dir():
        pytest.skip("fapolicyd's state folder is missing")
    text = export("fapolicyd", "staff", banlist=with_exceptions({"users": ["root"]}))
    count = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    assert count == 2
    loaded = fapolicyd_load(tmp_path / "good", text + "allow perm=any all : all\n")
    assert f"Loaded {count + 1} rules" in loaded.stderr, loaded.stderr
    broken = fapolicyd_load(tmp_path / "bad", text + "deny_audit perm=execute all : sha256hash\n")
    assert "Loaded" not in broken.stderr and broken.returncode != 0, broken.stderr


@pytest.mark.parametrize("groups", [("staff",), ("deputies",)])
def test_nft_checks_the_table(tmp_path: Path, groups: tuple[str, ...]) -> None:
    nft = require_tool("nft")
    table = tmp_path / "appban.nft"
    table.write_text(export("nftables", *groups))
    done = checked([nft, "-c", "-f", str(table)])
    assert done.returncode == 0, done.stdout + done.stderr
    table.write_text(export("nftables", *groups) + "table inet appban { chain x { drop everything } }\n")
    assert checked([nft, "-c", "-f", str(table)]).returncode != 0, "the check can fail"


def test_dnsmasq_fills_the_nftables_set_as_it_resolves_a_banned_name(tmp_path: Path) -> None:
    """In a network namespace of its own (nothing of the machine's firewall is touched): the
    exported table loaded by nft, an upstream dnsmasq answering for the name, and the exported
    nftset conf in the dnsmasq in front; after one query the address is in the set."""
    nft, dnsmasq, ip = require_tool("nft"), require_tool("dnsmasq"), require_tool("ip")
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root")
    (tmp_path / "appban.nft").write_text(export("nftables", "staff"))
    (tmp_path / "nftset.conf").write_text(export("dnsmasq-nftset", "staff"))
    common = "--keep-in-foreground --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --pid-file --user=root"
    script = f"""
{ip} link set lo up && {nft} -f {tmp_path}/appban.nft || exit 3
{dnsmasq} {common} --port=5400 --address=/tiktokv.com/192.0.2.44 & upstream=$!
{dnsmasq} {common} --port=5399 --server=127.0.0.1#5400 --conf-file={tmp_path}/nftset.conf & front=$!
{sys.executable} -c "import sys; sys.path.insert(0, {str(REPO)!r}); from tests.export_support import ask, addresses; print(addresses(ask(5399, 'api.tiktokv.com')))"
{nft} list set inet appban banned4
kill $front $upstream
"""
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, check=False)
    assert "['192.0.2.44']" in done.stdout, done.stdout + done.stderr
    assert re.search(r"elements = \{ 192\.0\.2\.44 ", done.stdout), done.stdout
