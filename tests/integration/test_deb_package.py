"""The .deb from packaging/deb/build.sh: built for real, installed with real dpkg into a throwaway
root, and the installed agent run from it with the system's own Python (no venv on its path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, require_tool
from tests.debs import dpkg_root, install

SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    require_tool("dpkg-deb")
    out = tmp_path_factory.mktemp("deb")
    built = subprocess.run([str(REPO / "packaging/deb/build.sh"), str(out)], capture_output=True, text=True,
                           timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert built.returncode == 0, built.stderr[-2000:]
    deb = Path(built.stdout.strip().splitlines()[-1])
    root = dpkg_root(out / "root")
    install(root, deb)
    return root


def test_package_installs_the_agent_the_unit_and_a_conffile(installed: Path) -> None:
    status = subprocess.run(["dpkg-query", f"--admindir={installed}/var/lib/dpkg", "-W", "-f",
                             "${db:Status-Abbrev}${Version}", "appban"], capture_output=True, text=True, check=True)
    assert status.stdout.startswith("ii 0.1.0")
    assert (installed / "usr/bin/appban").stat().st_mode & 0o111
    assert "ExecStart=/usr/bin/appban run" in (installed / "lib/systemd/system/appban.service").read_text()
    conffiles = (installed / "var/lib/dpkg/info/appban.conffiles").read_text().split()
    assert conffiles == ["/etc/appban/agent.yaml"]
    assert not (installed / "var/lib/dpkg/info/appban.postinst").exists(), "installing must not start anything"


def test_installed_agent_runs_a_check_with_the_system_python(installed: Path) -> None:
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True) if os.path.exists(SYSTEM_PYTHON) else None
    if probe is None or probe.stdout.strip() != str(sys.version_info[:2]):
        pytest.skip("the system python3 is not the version the package was built for")
    wrapper = (installed / "usr/bin/appban").read_text()
    code = wrapper.split("-c '", 1)[1].split("'", 1)[0].replace("/usr/lib/appban", str(installed / "usr/lib/appban"))
    done = subprocess.run([SYSTEM_PYTHON, "-I", "-c", code, "check", "--source", "process", "--format", "json"],
                          capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert report["banlist"]["source"] == "bundled example"
    assert report["devices"][0]["apps"] > 0
