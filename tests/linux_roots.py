"""Builders of real Linux trees for the inventory tests: real .rpm packages built with rpmbuild
and installed with the real rpm into a throwaway root, and dpkg run on such a root (never on this
machine's databases). .deb packages come from tests/debs.py."""

from __future__ import annotations

import os
import shlex
import subprocess
import textwrap
from pathlib import Path

from agent.config import Config
from agent.inventory.base import Context

TIMEOUT = 120


def run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    """Run a real tool and return its stdout; fail the test with its stderr if it fails."""
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT, check=False,
        stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C", **(env or {})},
    )
    assert done.returncode == 0, f"{args[0]} failed ({done.returncode}): {done.stderr}"
    return done.stdout


def context(root: Path) -> Context:
    """Return the Context of a mounted tree (live collectors skipped)."""
    return Context(root=root, live=False, config=Config())


def dpkg(root: Path, *args: str | Path) -> str:
    """Run the real dpkg on the throwaway root (its own admin folder, no maintainer scripts)."""
    return run("dpkg", f"--root={root}", "--force-not-root", "--force-script-chrootless", "--log=/dev/null", *args)


def build_rpm(work: Path, name: str, version: str, release: str, files: dict[str, str],
              epoch: str = "", vendor: str = "") -> Path:
    """Build a real noarch .rpm with rpmbuild holding `files` (path -> text); return its path."""
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
