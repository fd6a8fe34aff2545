"""Real parts for the enforcement tests: .deb packages built with dpkg-deb, installed with the
real dpkg into a throwaway root (`dpkg --root`, which gives them their own status database,
info lists and file tree), ban lists naming them, and config pointing enforcement at that root.

Nothing here touches the real system's package database or /etc.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

TIMEOUT = 60


def need(tool: str) -> str:
    """Return a Debian tool's path; skip without it, but fail under CI (which installs it)."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} not found, but CI installs it", pytrace=False)
        pytest.skip(f"{tool} not installed")
    return path


def need_root() -> None:
    """Skip without root: a property of the machine, not a missing tool, so even under CI the
    test is skipped (and listed with its reason by `-ra`) rather than failed."""
    if os.geteuid() != 0:
        pytest.skip("needs root (real dpkg/rpm roots, signals, fanotify, mounts)")


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def make_dpkg_root(path: Path) -> Path:
    """Create an empty dpkg database under `path` (what a fresh system has)."""
    admin = path / "var/lib/dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "updates").mkdir()
    (admin / "status").touch()
    return path


def build_deb(work: Path, package: str, programs: dict[str, bytes | Path], essential: bool = False,
              depends: str = "") -> Path:
    """Build a real .deb holding `programs` ({name in /usr/bin: content or a file to copy})."""
    tree = work / f"build-{package}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr/bin").mkdir(parents=True)
    for name, content in programs.items():
        target = tree / "usr/bin" / name
        if isinstance(content, Path):
            shutil.copy(content, target)
        else:
            target.write_bytes(content)
        target.chmod(0o755)
    control = (f"Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: appban tests <tests@example.org>\n"
               f"Description: appban enforcement test package\n")
    if essential:
        control += "Essential: yes\nPriority: required\n"
    if depends:
        control += f"Depends: {depends}\n"
    (tree / "DEBIAN/control").write_text(control)
    deb = work / f"{package}.deb"
    subprocess.run([need("dpkg-deb"), "--root-owner-group", "--build", str(tree), str(deb)],
                   check=True, capture_output=True, timeout=TIMEOUT)
    return deb


def dpkg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("dpkg"), "--root", str(root), *args], capture_output=True, text=True, timeout=TIMEOUT)


def installed(root: Path, package: str) -> bool:
    """Ask the real dpkg (`dpkg -s`) whether the package is installed in `root`."""
    done = dpkg(root, "-s", package)
    return done.returncode == 0 and "Status: install ok installed" in done.stdout


def banlist_yaml(entries: list[dict]) -> str:
    """Return an appban.banlist/v1 document with these entries (action block unless given)."""
    lines = ["format: appban.banlist/v1", "serial: 7", "issued: 2026-01-01T00:00:00Z", "entries:"]
    for entry in entries:
        lines.append(f"  - id: {entry['id']}")
        lines.append(f"    name: {entry.get('name', entry['id'])}")
        lines.append(f"    action: {entry.get('action', 'block')}")
        lines.append("    reason: banned for the enforcement tests")
        lines.append("    references: [\"https://example.org/directive-7\"]")
        lines.append("    match:")
        for kind, values in entry["match"].items():
            lines.append(f"      {kind}: [{', '.join(repr(v) for v in values)}]")
        if "applies_to" in entry:
            lines.append(f"    applies_to: [{', '.join(entry['applies_to'])}]")
    return "\n".join(lines) + "\n"


def config_yaml(root: Path, state: Path, **enforcement: object) -> str:
    """Return an agent config that reads and enforces on `root`, keeping state in `state`."""
    settings = {"mode": "block", "root": str(root), "notify": False, "guard": "off", **enforcement}
    lines = [f"state_dir: {state}", "device:", "  id: test-host", "inventory:", f"  root: {root}",
             "  sources: [dpkg, desktop]", "enforcement:"]
    for key, value in settings.items():
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, (list, tuple)):
            value = "[" + ", ".join(f'"{v}"' for v in value) + "]"
        else:
            value = f'"{value}"' if isinstance(value, str) else value
        lines.append(f"  {key}: {value}")
    return "\n".join(lines) + "\n"


def build_rpm(work: Path, package: str, program: str) -> Path:
    """Build a real noarch .rpm holding one shell script in /usr/bin, with rpmbuild."""
    top = work / f"rpmbuild-{package}"
    (top / "SPECS").mkdir(parents=True)
    spec = top / "SPECS" / f"{package}.spec"
    spec.write_text(
        f"Name: {package}\nVersion: 1.0\nRelease: 1\nSummary: appban test\nLicense: MIT\nBuildArch: noarch\n"
        f"%description\nappban enforcement test package\n"
        f"%install\nmkdir -p %{{buildroot}}/usr/bin\nprintf '#!/bin/sh\\n' > %{{buildroot}}/usr/bin/{program}\n"
        f"chmod 755 %{{buildroot}}/usr/bin/{program}\n%files\n/usr/bin/{program}\n"
    )
    subprocess.run([need("rpmbuild"), "--define", f"_topdir {top}", "--define", f"_rpmdir {top}/out", "-bb", str(spec)],
                   check=True, capture_output=True, timeout=TIMEOUT)
    return next((top / "out").rglob("*.rpm"))


def rpm(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("rpm"), "--root", str(root), *args], capture_output=True, text=True, timeout=TIMEOUT)
