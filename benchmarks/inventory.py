"""How fast the Linux inventory is, beside the native tools reading the same databases.

Prints:
1. this machine: each collector's wall time, and the full `appban inventory` wall time and peak
   memory, beside `dpkg-query -W` on this machine's dpkg database;
2. an rpm database of RPM_PACKAGES real packages (built with rpmbuild as subpackages of one
   spec, installed with rpm into a throwaway root): the rpm collector beside `rpm -qa`;
3. a synthetic dpkg status with DPKG_PACKAGES packages: the dpkg collector and the full
   `appban inventory --root` beside `dpkg-query -W`.

Target: each collector no slower than the native tool listing the same database.
Run: .venv/bin/python benchmarks/inventory.py [--dpkg-packages N] [--rpm-packages N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.config import Config  # noqa: E402
from agent.inventory import load_collector, select  # noqa: E402
from agent.inventory.base import Context  # noqa: E402
from agent.inventory.rpm import QUERY_FORMAT  # noqa: E402

REPEAT = 5


def best_of(action: Callable[[], object], repeat: int = REPEAT) -> float:
    """Return the best wall time of `repeat` runs, in seconds (the least disturbed run)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def run_measured(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float | None]:
    """Run a command; return (wall seconds, peak resident memory in MiB or None).

    The peak comes from GNU time (`%M`), a small parent: a child forked straight from this
    Python process would report Python's own memory as its peak (ru_maxrss counts the mm it
    had before exec).
    """
    wrapper = ["/usr/bin/time", "-f", "%M"] if os.path.exists("/usr/bin/time") else []
    start = time.perf_counter()
    done = subprocess.run([*wrapper, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "LC_ALL": "C", **(env or {})}, check=False)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{argv[0]} failed ({done.returncode}): {done.stderr[-500:]}")
    peak = done.stderr.strip().splitlines()[-1] if wrapper and done.stderr.strip() else ""
    return wall, (int(peak) / 1024 if peak.isdigit() else None)


def best_measured(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float | None]:
    runs = [run_measured(argv, env) for _ in range(REPEAT)]
    peaks = [r[1] for r in runs if r[1] is not None]
    return min(r[0] for r in runs), (max(peaks) if peaks else None)


def appban(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args]


def row(label: str, seconds: float, memory: float | None = None, versus: float | None = None) -> None:
    """Print one figure: wall time, peak memory when measured, ratio to the native tool."""
    ratio = f"  {seconds / versus:5.2f}x native" if versus else ""
    mem = f"  {memory:7.1f} MiB peak" if memory is not None else ""
    print(f"  {label:<44} {seconds * 1000:9.1f} ms{mem}{ratio}")


def this_machine() -> None:
    print("This machine (/):")
    ctx = Context(root=Path("/"), live=True, config=Config())
    native = {"dpkg": best_measured(["dpkg-query", "-W"]) if shutil.which("dpkg-query") else None}
    if native["dpkg"]:
        row("native: dpkg-query -W", *native["dpkg"])
    for collector in select(()):
        reason = collector.unavailable(ctx)
        if reason is not None:
            print(f"  collector {collector.name:<34} not available here ({reason})")
            continue
        versus = native.get(collector.name)
        row(f"collector {collector.name}", best_of(lambda c=collector: c.collect(ctx)),
            versus=versus[0] if versus else None)
    row("appban inventory (all collectors)", *best_measured(appban("inventory")))


def rpm_root(work: Path, count: int) -> Path:
    """Build `count` real packages (subpackages of one spec) and install them into a temp root."""
    spec = work / "bench.spec"
    parts = ["Name: bench\nVersion: 1.0\nRelease: 1\nSummary: bench\nLicense: MIT\nBuildArch: noarch\n"
             "%description\nbench\n%install\nmkdir -p %{buildroot}/usr/share/bench\n"
             f"for i in $(seq 1 {count}); do echo $i > %{{buildroot}}/usr/share/bench/f$i; done\n"]
    for i in range(1, count + 1):
        parts.append(f"%package -n bench-{i}\nSummary: bench {i}\nVendor: Bench Vendor\n"
                     f"%description -n bench-{i}\nbench {i}\n%files -n bench-{i}\n/usr/share/bench/f{i}\n")
    spec.write_text("".join(parts))
    subprocess.run(["rpmbuild", "--define", f"_topdir {work / 'build'}", "--define", f"_rpmdir {work / 'rpms'}",
                    "-bb", str(spec)], check=True, capture_output=True)
    root = work / "rpmroot"
    root.mkdir()
    rpms = sorted(str(p) for p in (work / "rpms/noarch").glob("*.rpm"))
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-i", "--nodeps", "--nosignature",
                    "--justdb", *rpms], check=True, capture_output=True)
    return root


def rpm_database(work: Path, count: int) -> None:
    if not (shutil.which("rpm") and shutil.which("rpmbuild")):
        print("\nrpm: not installed, skipped")
        return
    print(f"\nrpm database of {count} real packages (rpmbuild + rpm --justdb):")
    root = rpm_root(work, count)
    ctx = Context(root=root, live=False, config=Config())
    collector = load_collector("rpm")
    base = ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-qa"]
    row("native: rpm -qa", *best_measured(base))
    native = best_measured([*base, "--queryformat", QUERY_FORMAT])
    row("native: rpm -qa --queryformat (the same 7 tags)", *native)
    row("collector rpm", best_of(lambda: collector.collect(ctx)), versus=native[0])
    row("appban inventory --root (all collectors)", *best_measured(appban("inventory", "--root", str(root))))


def synthetic_status(count: int) -> str:
    """Return a dpkg status file of `count` packages shaped like real ones (5% not installed)."""
    stanzas = []
    for i in range(count):
        state = "deinstall ok config-files" if i % 20 == 0 else "install ok installed"
        stanzas.append(
            f"Package: pkg-{i:06d}\nStatus: {state}\nPriority: optional\nSection: misc\n"
            f"Installed-Size: {i % 9000 + 10}\nMaintainer: Bench Maintainers <bench@example.invalid>\n"
            f"Architecture: {'all' if i % 3 else 'amd64'}\n{'Multi-Arch: same' + chr(10) if i % 21 == 0 else ''}"
            f"Version: {i % 17}.{i % 101}-{i % 5}\nDepends: libc6 (>= 2.34), libfoo{i % 50} (>= 1.0)\n"
            f"Description: synthetic package number {i}\n A longer description of this synthetic package,\n"
            " wrapped as dpkg wraps them.\n .\n Second paragraph.\n")
    return "\n".join(stanzas) + "\n"


def dpkg_database(work: Path, count: int) -> None:
    if not shutil.which("dpkg-query"):
        print("\ndpkg-query: not installed, skipped")
        return
    root = work / "dpkgroot"
    admin = root / "var/lib/dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "updates").mkdir()
    (admin / "status").write_text(synthetic_status(count))
    size = (admin / "status").stat().st_size / 1024 / 1024
    print(f"\nSynthetic dpkg status, {count} packages ({size:.0f} MiB):")
    ctx = Context(root=root, live=False, config=Config())
    collector = load_collector("dpkg")
    native = best_measured(["dpkg-query", f"--admindir={admin}", "-W"])
    row("native: dpkg-query -W", *native)
    row("collector dpkg", best_of(lambda: collector.collect(ctx)), versus=native[0])
    row("appban inventory --root --source dpkg", *best_measured(appban("inventory", "--root", str(root), "--source", "dpkg")),
        versus=native[0])
    row("appban inventory --root (all collectors)", *best_measured(appban("inventory", "--root", str(root))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dpkg-packages", type=int, default=100_000)
    parser.add_argument("--rpm-packages", type=int, default=1000)
    args = parser.parse_args()
    os.chdir(REPO)
    this_machine()
    with tempfile.TemporaryDirectory(prefix="appban-bench-") as tmp:
        rpm_database(Path(tmp), args.rpm_packages)
        dpkg_database(Path(tmp), args.dpkg_packages)


if __name__ == "__main__":
    main()
