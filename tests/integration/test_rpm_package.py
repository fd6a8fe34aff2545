"""The .rpm from packaging/rpm/build.sh, built for real with rpmbuild and installed, upgraded and
erased with the real `rpm --root` in a throwaway root (tests/overlay_root.py), its scriptlets run
by rpm; `rpm -q --scripts`, the file list, the config files and the installed agent are checked.
This Debian system has no rpm packages of python3-psutil and friends, so installs pass --nodeps;
the root's Debian python3 libraries then let the installed agent run its check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, require_tool
from tests.overlay_root import STEP_TIMEOUT, OverlayRoot, overlay_root

BUILD = REPO / "packaging/rpm/build.sh"


@pytest.fixture(scope="module")
def rpms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_tool("rpmbuild")
    out = tmp_path_factory.mktemp("rpms")
    built = {}
    for release in ("1", "2"):
        done = subprocess.run([str(BUILD), str(out)], capture_output=True, text=True, timeout=STEP_TIMEOUT,
                              env={**os.environ, "RPM_RELEASE": release, "PYTHON": sys.executable})
        assert done.returncode == 0, done.stderr[-3000:]
        built[release] = Path(done.stdout.strip().splitlines()[-1])
    return built


@pytest.fixture
def root(tmp_path: Path, rpms: dict[str, Path]) -> OverlayRoot:
    return overlay_root(tmp_path / "root", rpms.values())


def rpm(root: OverlayRoot, *args: str) -> str:
    """Run the real rpm on the throwaway root (`rpm --root`: scriptlets run chrooted there)."""
    return root.ok("rpm", f"--root={root.merged}", *args, chroot=False)


def test_the_package_requires_the_distributions_python_libraries(rpms: dict[str, Path]) -> None:
    requires = subprocess.run(["rpm", "-qp", "--requires", str(rpms["1"])], capture_output=True, text=True,
                              check=True, timeout=60).stdout.split("\n")
    for library in ("psutil", "requests", "pyyaml", "schedule", "cryptography", "idna"):
        assert f"python3-{library}" in requires
    assert not [r for r in requires if "prometheus" in r]  # agent.exposition writes the metrics
    assert "python3 >= 3.10" in requires


@pytest.mark.slow
def test_install_check_upgrade_erase(root: OverlayRoot, rpms: dict[str, Path]) -> None:
    first, second = (f"/tmp/{rpms[release].name}" for release in ("1", "2"))
    rpm(root, "-i", "--nodeps", f"{root.merged}{first}")
    assert rpm(root, "-q", "appban").strip() == "appban-0.1.0-1.noarch"
    scripts = rpm(root, "-q", "--scripts", "appban")
    assert "postinstall scriptlet" in scripts and "systemctl daemon-reload" in scripts
    assert 'if [ "$1" -eq 0 ]' in scripts and "disable --now appban.service" in scripts, "erase stops the service"
    assert "try-restart appban.service" in scripts, "an upgrade restarts a running service"
    assert "enable" not in scripts.replace("disable", ""), "installing never enables the service"
    files = set(rpm(root, "-ql", "appban").split())
    assert {"/usr/bin/appban", "/usr/lib/systemd/system/appban.service", "/etc/appban/agent.yaml",
            "/var/lib/appban", "/usr/share/appban/agent/platform/__init__.py"} <= files
    assert rpm(root, "-qc", "appban").split() == ["/etc/appban/agent.yaml"]
    assert not root.exists("/etc/systemd/system/multi-user.target.wants/appban.service")
    verified = root.run("rpm", f"--root={root.merged}", "-V", "--nodeps", "appban", chroot=False)
    assert (verified.returncode, verified.stdout) == (0, ""), "installed files match the package"

    checked = root.run("/usr/bin/appban", "check", "--source", "dpkg", "--format", "json")
    assert checked.returncode in (0, 1), checked.stderr
    assert json.loads(checked.stdout)["devices"][0]["apps"] > 100

    root.ok("sh", "-c", "echo '# edited by the administrator' >> /etc/appban/agent.yaml")
    rpm(root, "-U", "--nodeps", f"{root.merged}{second}")
    assert rpm(root, "-q", "appban").strip() == "appban-0.1.0-2.noarch"
    assert root.ok("tail", "-n1", "/etc/appban/agent.yaml").strip() == "# edited by the administrator"
    assert not root.exists("/etc/appban/agent.yaml.rpmnew"), "unchanged in the package: no .rpmnew"

    rpm(root, "-e", "--nodeps", "appban")
    assert root.run("rpm", f"--root={root.merged}", "-q", "appban", chroot=False).returncode == 1
    assert not root.exists("/usr/bin/appban") and not root.exists("/usr/share/appban")
    assert root.ok("tail", "-n1", "/etc/appban/agent.yaml.rpmsave").strip() == "# edited by the administrator"
