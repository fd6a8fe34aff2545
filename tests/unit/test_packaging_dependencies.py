"""Each runtime dependency in pyproject.toml has its distribution package in the .deb's Depends and
the .rpm's Requires (packaging/dependencies.py maps the names), so a new dependency cannot ship
as a package that installs without it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"


def mapped(target: str) -> set[str]:
    done = subprocess.run([sys.executable, str(PACKAGING / "dependencies.py"), target], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.strip().split(", "))


def test_the_deb_depends_on_every_mapped_library() -> None:
    control = (PACKAGING / "deb/debian/control").read_text()
    depends = control.split("\nPackage: appban\n", 1)[1].split("\nDescription:", 1)[0]
    assert mapped("debian") <= set(re.findall(r"python3-[a-z0-9-]+", depends))


def test_the_rpm_requires_every_mapped_library() -> None:
    spec = (PACKAGING / "rpm/appban.spec").read_text()
    assert mapped("rpm") <= set(re.findall(r"^Requires:\s+(\S+)", spec, re.M))


def test_the_windows_build_gets_every_requirement_and_truststore() -> None:
    done = subprocess.run([sys.executable, str(PACKAGING / "dependencies.py"), "windows"], capture_output=True,
                          text=True, timeout=60, check=True)
    names = {re.split(r"[<>=]", word)[0] for word in done.stdout.split()}
    assert {"psutil", "requests", "regipy", "truststore", "idna"} <= names
