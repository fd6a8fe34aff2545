"""Benchmarks for the one-off check (issue 2). Prints figures; asserts nothing.

1. matching 100,000 apps against 10,000 entries (target: under 0.3 s);
2. the dpkg collector in-process against a whole `dpkg-query -W` process on the same database;
3. `appban check` as a whole process against a bare `python -c pass`, both of a regular install.

Run: .venv/bin/python benchmarks/check.py
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from agent.inventory.base import Context  # noqa: E402
from agent.inventory.dpkg import DpkgCollector  # noqa: E402
from agent.match import compile_banlist, match  # noqa: E402
from agent.model import App, BanList, Device, Entry, Match  # noqa: E402
from measure import regular_install  # noqa: E402

KINDS = ("android", "ios", "windows", "deb", "flatpak")
SOURCES = {"android": "android", "ios": "ios", "windows": "windows", "deb": "dpkg", "flatpak": "flatpak"}


def synthetic(n_entries: int, n_apps: int, seed: int = 1) -> tuple[BanList, list[App]]:
    """A list shaped like real ones (ids per platform, some name and publisher globs) and an
    inventory in which about 1% of apps are banned."""
    rnd = random.Random(seed)
    entries = []
    for i in range(n_entries):
        ids = {k: (f"com.vendor{i}.app{k}",) for k in rnd.sample(KINDS, 2)}
        names = (f"banned app {i}*",) if i % 10 == 0 else ()
        publishers = (f"*vendor {i} ltd*",) if i % 50 == 0 else ()
        entries.append(Entry(id=f"e{i}", name=f"E{i}", match=Match(**ids, names=names, publishers=publishers)))
    banlist = BanList(format="appban.banlist/v1", serial=1, issued=datetime.now(timezone.utc), entries=tuple(entries))
    apps = []
    for j in range(n_apps):
        kind = rnd.choice(KINDS)
        banned = rnd.random() < 0.01
        ident = f"com.vendor{rnd.randrange(n_entries)}.app{kind}" if banned else f"org.example{j}.tool"
        apps.append(App(source=SOURCES[kind], id=ident, name=f"Example tool {j}", publisher=f"Example Org {j % 97}",
                        version="1.0", device=f"dev{j % 50}"))
    return banlist, apps


def bench_match() -> None:
    banlist, apps = synthetic(10_000, 100_000)
    devices = {f"dev{i}": Device(id=f"dev{i}") for i in range(50)}
    now = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    compiled = compile_banlist(banlist)
    t1 = time.perf_counter()
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        found = match(apps, devices, compiled, now)
        runs.append(time.perf_counter() - start)
    print(f"match: 100,000 apps x 10,000 entries: compile {t1 - t0:.3f} s, "
          f"match median {statistics.median(runs):.3f} s (min {min(runs):.3f}), {len(found)} findings "
          f"[target < 0.3 s]")


def bench_dpkg() -> None:
    ctx = Context()
    runs, procs = [], []
    for _ in range(10):
        start = time.perf_counter()
        apps = DpkgCollector().collect(ctx).apps
        runs.append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run(["dpkg-query", "-W"], capture_output=True, check=True)
        procs.append(time.perf_counter() - start)
    print(f"dpkg: {len(apps)} packages: collector median {statistics.median(runs) * 1000:.1f} ms, "
          f"dpkg-query -W median {statistics.median(procs) * 1000:.1f} ms [target: no slower]")


def _median_run(argv: list[str], n: int = 10) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, cwd=REPO)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_process() -> None:
    """Against a regular install's interpreter (measure.regular_install: the checkout's editable
    venv starts three times slower than a deployed agent's)."""
    with tempfile.TemporaryDirectory(prefix="appban-check-") as work:
        bin_dir = regular_install(Path(work))
        python = str(bin_dir / "python")
        floor = _median_run([python, "-c", "pass"])
        deps = _median_run([python, "-c", "import yaml, psutil, dataclasses, logging, json, pathlib"])
        whole = _median_run([str(bin_dir / "appban"), "check"])
    print(f"process: python -c pass {floor * 1000:.0f} ms, importing the core dependencies alone "
          f"{deps * 1000:.0f} ms, appban check {whole * 1000:.0f} ms = {whole / floor:.1f}x the interpreter's "
          f"start [target < 2x]")


if __name__ == "__main__":
    bench_match()
    bench_dpkg()
    bench_process()
