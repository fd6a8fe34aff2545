"""Builders of real Linux trees for the inventory tests: real .deb and .rpm packages installed
with the real dpkg and rpm into a throwaway root (never into this machine's databases).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from agent.config import Config
from agent.inventory.base import Context

TIMEOUT = 120


def require(*tools: str) -> None:
    """Skip the test when a tool is missing, except in CI, which installs them (then fail)."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"missing {', '.join(missing)}, but CI installs them", pytrace=False)
        pytest.skip(f"{', '.join(missing)} not installed")


def run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a real tool and return its stdout; fail the test with its stderr if it fails."""
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT, check=False,
        stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C", **(env or {})}, cwd=cwd,
    )
    assert done.returncode == 0, f"{args[0]} failed ({done.returncode}): {done.stderr}"
    return done.stdout


def context(root: Path) -> Context:
    return Context(root=root, live=False, config=Config())


def dpkg_root(root: Path) -> Path:
    """Create the empty dpkg database `dpkg --root` expects; return the admin folder."""
    admin = root / "var/lib/dpkg"
    for folder in ("info", "updates", "triggers"):
        (admin / folder).mkdir(parents=True, exist_ok=True)
    for name in ("status", "available"):
        (admin / name).touch()
    return admin


def build_deb(
    work: Path, name: str, version: str, arch: str = "all", files: dict[str, str] | None = None,
    multi_arch: str = "", conffiles: tuple[str, ...] = (),
) -> Path:
    """Build a real .deb with dpkg-deb holding `files` ({path: content}); return its path."""
    tree = work / f"{name}_{version}_{arch}"
    (tree / "DEBIAN").mkdir(parents=True)
    control = f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
    control += "Maintainer: Appban Tests <tests@appban.invalid>\nDescription: test package\n"
    if multi_arch:
        control += f"Multi-Arch: {multi_arch}\n"
    (tree / "DEBIAN/control").write_text(control)
    if conffiles:
        (tree / "DEBIAN/conffiles").write_text("".join(f"{c}\n" for c in conffiles))
    for path, content in (files or {}).items():
        target = tree / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(0o755 if "/bin/" in path else 0o644)
    deb = work / f"{tree.name}.deb"
    run("dpkg-deb", "--root-owner-group", "--build", tree, deb)
    return deb


def dpkg(root: Path, *args: str | Path) -> str:
    """Run the real dpkg on the throwaway root (its own admin folder, no maintainer scripts)."""
    return run("dpkg", f"--root={root}", "--force-not-root", "--force-architecture", "--force-depends",
               "--force-script-chrootless", *args)


def build_rpm(work: Path, name: str, version: str, release: str, files: dict[str, str],
              epoch: str = "", vendor: str = "") -> Path:
    """Build a real noarch .rpm with rpmbuild holding `files`; return its path."""
    spec = work / f"{name}.spec"
    install = "".join(
        f"mkdir -p %{{buildroot}}{os.path.dirname(p)}\n"
        f"printf '%s' {shlex.quote(c)} > %{{buildroot}}{p}\n" for p, c in files.items()
    )
    header = f"Name: {name}\nVersion: {version}\nRelease: {release}\n"
    header += f"Epoch: {epoch}\n" if epoch else ""
    header += f"Vendor: {vendor}\n" if vendor else ""
    spec.write_text(header + textwrap.dedent("""\
        Summary: test package
        License: MIT
        BuildArch: noarch
        %description
        test package
        %install
        """) + install + "%files\n" + "".join(f"{p}\n" for p in files))
    out = work / "rpms"
    run("rpmbuild", "--define", f"_topdir {work / 'rpmbuild'}", "--define", f"_rpmdir {out}", "-bb", spec)
    return next(out.glob(f"noarch/{name}-{version}-*.rpm"))


def rpm_install(root: Path, dbpath: str, *rpms: Path) -> None:
    """Install real .rpm files into the throwaway root with the real rpm."""
    run("rpm", "--root", root, "--dbpath", dbpath, "-i", "--nodeps", "--nosignature", *rpms)
