"""What reading inside the root costs (agent/inventory/reading.py): 500 launchers in a temp root,
read with `read_bytes(path, root=ROOT)` against a plain `open().read()` of the same files (the
floor), once as plain files (openat2's one-call path where the kernel has it) and once each
reached through a link in a user's folder (the component walk and its checks), and the desktop
collector over that root. Ratios to the floor, median of the rounds and their spread.

    .venv/bin/python benchmarks/safe_reading.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import paired, timed  # noqa: E402

from agent.inventory import reading  # noqa: E402
from agent.inventory.base import Context  # noqa: E402
from agent.inventory.desktop import DesktopCollector  # noqa: E402

COUNT = 500
LAUNCHER = "[Desktop Entry]\nType=Application\nName=App {n}\nExec=/opt/app{n}/run %U\nIcon=app{n}\n"


def lay_out(root: Path) -> tuple[list[Path], list[Path]]:
    """Write COUNT system launchers and, in a user's folder, a link to each; return both lists."""
    system = root / "usr/share/applications"
    linked = root / "home/eve/.local/share/applications"
    system.mkdir(parents=True)
    linked.mkdir(parents=True)
    for n in range(COUNT):
        (system / f"app{n}.desktop").write_text(LAUNCHER.format(n=n))
        (linked / f"link{n}.desktop").symlink_to(f"../../../../../usr/share/applications/app{n}.desktop")
    if os.geteuid() == 0:  # the user's own folders, so each link is judged as one a user planted
        for folder in (root / "home/eve", root / "home/eve/.local", root / "home/eve/.local/share", linked):
            os.chown(folder, 4242, 4242)
    return sorted(system.iterdir()), sorted(linked.iterdir())


def plain(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as handle:
            handle.read()


def safe(paths: list[Path], root: Path) -> None:
    for path in paths:
        reading.read_bytes(path, root=root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    rounds = parser.parse_args().rounds
    print(f"openat2 available: {reading._openat2() is not None}")
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "root"
        system, linked = lay_out(root)
        paired(f"read_bytes, {COUNT} plain files", timed(lambda: safe(system, root)),
               "open().read()", timed(lambda: plain(system)), rounds)
        paired(f"read_bytes, {COUNT} files through links in a user's folder", timed(lambda: safe(linked, root)),
               "open().read()", timed(lambda: plain(linked)), rounds)
        ctx = Context(root=root, live=False)
        paired(f"desktop collector, {2 * COUNT} launchers", timed(lambda: DesktopCollector().collect(ctx)),
               "open().read() of them", timed(lambda: plain(system + linked)), rounds)


if __name__ == "__main__":
    main()
