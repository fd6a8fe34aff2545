"""A throwaway root for package tests: a copy-on-write overlay of this Debian system, mounted in a
private mount namespace and entered with chroot. The packaging tools and maintainer scripts run
for real inside it, with Debian's python3 and libraries there, yet nothing reaches the host's
package databases, /etc or systemd: every write lands in the overlay's upper folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterable

import pytest

from tests.conftest import require_tool

STEP_TIMEOUT = 300


class OverlayRoot:
    """A copy-on-write root over this system: `upper` collects every change made inside it."""

    def __init__(self, folder: Path) -> None:
        self.upper, self.work, self.merged = folder / "upper", folder / "work", folder / "merged"
        for path in (self.upper, self.work, self.merged):
            path.mkdir(parents=True)

    def command(self, *argv: str, chroot: bool = True) -> list[str]:
        """Return the command line that runs argv inside the root (the same process: exec all the
        way); with chroot False, argv runs outside it but with the root mounted at `merged`
        (for `rpm --root`)."""
        enter = 'exec chroot "$root" "$@"' if chroot else 'exec "$@"'
        script = ('mount -t overlay overlay -o "lowerdir=/,upperdir=$1,workdir=$2" "$3" && '
                  f'mount -t proc proc "$3/proc" && root=$3 && shift 3 && {enter}')
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
                str(self.upper), str(self.work), str(self.merged), *argv]

    def run(self, *argv: str, chroot: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*argv, chroot=chroot), capture_output=True, text=True,
                              timeout=STEP_TIMEOUT, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
                              cwd="/")

    def ok(self, *argv: str, chroot: bool = True) -> str:
        done = self.run(*argv, chroot=chroot)
        assert done.returncode == 0, f"{argv}: {done.stderr[-2000:]}"
        return done.stdout

    def has(self, path: str) -> bool:
        """Whether the root holds `path` as a change of its own (written by what ran inside)."""
        return (self.upper / path.lstrip("/")).exists()

    def exists(self, path: str) -> bool:
        """Whether `path` exists as seen from inside the root."""
        return self.run("test", "-e", path).returncode == 0


def overlay_root(folder: Path, packages: Iterable[Path]) -> OverlayRoot:
    """Return a new OverlayRoot under `folder` with `packages` copied into its /tmp; skip (fail in
    CI) where a private mount namespace with an overlay cannot be made."""
    require_tool("unshare")
    if os.geteuid() != 0:
        pytest.skip("needs root for a private mount namespace")
    root = OverlayRoot(folder)
    for package in packages:
        target = root.upper / "tmp" / package.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(package.read_bytes())
    probe = root.run("true")
    if probe.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount an overlay root: {probe.stderr.strip()}")
        pytest.skip(f"cannot mount an overlay root here: {probe.stderr.strip()}")
    return root
