"""The .deb from packaging/deb/build.sh (debhelper + pybuild), built for real, checked by lintian,
and taken through install, a check and a service run, upgrade, remove and purge with the real
dpkg and its real maintainer scripts — in a throwaway root (tests/overlay_root.py: a copy-on-write
overlay of this Debian system, so Debian's python3-psutil, -requests, ... are there)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, require_tool
from tests.overlay_root import STEP_TIMEOUT, OverlayRoot, overlay_root

BUILD = REPO / "packaging/deb/build.sh"
UPGRADE = "0.1.0+test1"
SERVICE_CONFIG = """\
state_dir: /var/lib/appban
inventory: {sources: [dpkg]}
schedule: {scan: 1h, splay: 0.5s}
logging: {format: json, level: info}
"""


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_tool("dpkg-buildpackage")
    require_tool("dh_python3")
    out = tmp_path_factory.mktemp("debs")
    built = {}
    for version in ("", UPGRADE):
        done = subprocess.run([str(BUILD), str(out)], capture_output=True, text=True, timeout=STEP_TIMEOUT,
                              env={**os.environ, "DEB_VERSION": version} if version else None)
        assert done.returncode == 0, done.stderr[-3000:]
        built[version or "first"] = Path(done.stdout.strip().splitlines()[-1])
    return built


@pytest.fixture
def root(tmp_path: Path, debs: dict[str, Path]) -> OverlayRoot:
    return overlay_root(tmp_path / "root", debs.values())


def test_lintian_finds_nothing(debs: dict[str, Path]) -> None:
    require_tool("lintian")
    done = subprocess.run(["lintian", "--pedantic", "--display-info", str(debs["first"])], capture_output=True,
                          text=True, timeout=STEP_TIMEOUT)
    tags = [line for line in done.stdout.splitlines() if line[:2] in ("E:", "W:", "I:", "P:")]
    assert done.returncode == 0 and tags == [], done.stdout


def test_the_package_depends_on_debians_python_libraries_and_bundles_none(debs: dict[str, Path]) -> None:
    fields = subprocess.run(["dpkg-deb", "-f", str(debs["first"]), "Depends", "Architecture"], capture_output=True,
                            text=True, check=True).stdout
    for library in ("psutil", "requests", "yaml", "schedule", "cryptography", "idna"):
        assert f"python3-{library}" in fields
    assert "prometheus" not in fields  # agent.exposition writes the metrics
    assert "Architecture: all" in fields
    files = subprocess.run(["dpkg-deb", "-c", str(debs["first"])], capture_output=True, text=True, check=True).stdout
    assert "dist-packages/agent/platform/__init__.py" in files
    assert "psutil" not in files and "requests/" not in files and ".so" not in files


def dpkg_status(root: OverlayRoot) -> str:
    """Return dpkg's status letters and version of appban in the root, or "not known"."""
    done = root.run("dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Version}", "appban")
    return done.stdout.strip() if done.returncode == 0 else "not known"


def run_service(root: OverlayRoot) -> str:
    """Run the installed `appban run` until its first report lands, stop it with SIGTERM (as
    systemctl stop does) and return its log."""
    root.ok("sh", "-c", f"printf '%s' '{SERVICE_CONFIG}' > /etc/appban/service-test.yaml")
    service = subprocess.Popen(root.command("appban", "run", "--config", "/etc/appban/service-test.yaml"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        deadline = time.monotonic() + 120
        while not root.has("/var/lib/appban/report.json") and time.monotonic() < deadline:
            assert service.poll() is None, service.stderr.read()
            time.sleep(0.2)
        service.send_signal(signal.SIGTERM)
        _, log = service.communicate(timeout=120)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait(10)
    assert service.returncode == 0, log
    return log


@pytest.mark.slow
def test_install_check_run_upgrade_remove_purge(root: OverlayRoot, debs: dict[str, Path]) -> None:
    first, upgrade = (f"/tmp/{debs[key].name}" for key in ("first", UPGRADE))
    root.ok("dpkg", "-i", first)
    assert dpkg_status(root) == "ii 0.1.0"
    assert root.has("/usr/lib/python3/dist-packages/agent/cli.py") and root.exists("/lib/systemd/system/appban.service")
    assert not root.exists("/etc/systemd/system/multi-user.target.wants/appban.service"), "installed, not enabled"
    assert root.ok("cat", "/var/lib/dpkg/info/appban.conffiles").split() == ["/etc/appban/agent.yaml"]

    checked = root.run("appban", "check", "--source", "dpkg", "--format", "json")
    assert checked.returncode in (0, 1), checked.stderr
    report = json.loads(checked.stdout)
    assert report["banlist"]["source"] == "bundled example" and report["devices"][0]["apps"] > 100
    where = root.ok("/usr/bin/python3", "-c", "import agent, requests; print(agent.__file__, requests.__file__)")
    assert where.split() == ["/usr/lib/python3/dist-packages/agent/__init__.py",
                             "/usr/lib/python3/dist-packages/requests/__init__.py"]
    log = run_service(root)
    events = [json.loads(line)["event"] for line in log.splitlines() if line.startswith("{")]
    assert "scan.done" in events and events[-1] == "service.stopped", log

    root.ok("sh", "-c", "echo '# edited by the administrator' >> /etc/appban/agent.yaml")
    root.ok("dpkg", "-i", upgrade)
    assert dpkg_status(root) == f"ii {UPGRADE}"
    assert root.ok("tail", "-n1", "/etc/appban/agent.yaml").strip() == "# edited by the administrator"
    assert root.exists("/var/lib/appban/report.json"), "an upgrade keeps the state"

    root.ok("dpkg", "-r", "appban")
    assert dpkg_status(root).startswith("rc")
    assert root.ok("tail", "-n1", "/etc/appban/agent.yaml").strip() == "# edited by the administrator"
    assert not root.exists("/usr/bin/appban")
    assert root.exists("/var/lib/appban/report.json"), "remove keeps the state"

    root.ok("sh", "-c", "mkdir -p /var/lib/appban/quarantine/r1 && echo app > /var/lib/appban/quarantine/r1/x")
    purged = root.run("dpkg", "-P", "appban")
    assert purged.returncode == 0, purged.stderr
    assert "kept /var/lib/appban/quarantine" in purged.stderr
    assert dpkg_status(root) == "not known" or dpkg_status(root).startswith("pn")
    for gone in ("/etc/appban/agent.yaml", "/var/lib/appban/report.json", "/var/lib/appban/banlist"):
        assert not root.exists(gone), gone
    assert root.ok("cat", "/var/lib/appban/quarantine/r1/x").strip() == "app", "quarantined apps survive purge"
    root.ok("rm", "-rf", "/var/lib/appban")
    root.ok("dpkg", "-i", first)
    root.ok("dpkg", "-P", "appban")
    assert not root.exists("/var/lib/appban"), "purge with nothing quarantined removes it all"
