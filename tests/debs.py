"""Build real .deb packages with dpkg-deb and install them into throwaway dpkg roots."""

from __future__ import annotations

import subprocess
from pathlib import Path


def build_deb(workdir: Path, name: str, version: str = "1.0", arch: str = "all",
              files: dict[str, str] | None = None, maintainer: str = "Test <test@example.invalid>",
              extra_control: str = "", conffiles: tuple[str, ...] = ()) -> Path:
    """Build a .deb with `dpkg-deb --build` holding `files` (path -> text) and return its path."""
    tree = workdir / f"{name}_{version}_{arch}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: {maintainer}\n"
        f"Description: appban test package\n{extra_control}"
    )
    if conffiles:
        (tree / "DEBIAN" / "conffiles").write_text("".join(f"{c}\n" for c in conffiles))
    for path, text in (files or {}).items():
        target = tree / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o644 if path in conffiles else 0o755)
    out = workdir / f"{tree.name}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(out)],
                   check=True, capture_output=True, timeout=60)
    return out


def dpkg_root(path: Path) -> Path:
    """Create an empty dpkg database under `path` (as debootstrap lays one out) and return it."""
    admin = path / "var/lib/dpkg"
    for sub in ("info", "updates", "triggers"):
        (admin / sub).mkdir(parents=True, exist_ok=True)
    (admin / "status").touch()
    (admin / "available").touch()
    return path


def install(root: Path, *debs: Path) -> None:
    """Install .debs into the dpkg database under `root` with the real dpkg."""
    subprocess.run(
        ["dpkg", f"--root={root}", "--force-not-root", "--force-script-chrootless", "--force-depends",
         "--log=/dev/null", "-i", *map(str, debs)],
        check=True, capture_output=True, timeout=120,
    )
