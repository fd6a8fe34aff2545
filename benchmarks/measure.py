"""Paired measurements for the benchmarks: a subject and its floor, measured in the same run.

The machine these figures come from is shared, so one run means little: every figure is taken
as rounds that alternate floor and subject, and printed as the median ratio with its spread
(lowest and highest round). Processes are started with the venv's own interpreter
(`sys.executable`), with bytecode caching on (a fresh checkout pays compile time only once).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
"""The environment for child processes: a developer's PYTHONDONTWRITEBYTECODE would make every
start-up figure include compiling the agent's sources."""
MIB = 1024 * 1024


@dataclass(frozen=True)
class Figure:
    """One line of the table: a subject against its floor, over several rounds."""

    name: str
    floor_name: str
    subject: list[float]
    floor: list[float]
    unit: str = "ms"
    target: str = ""

    def ratios(self) -> list[float]:
        return [s / f for s, f in zip(self.subject, self.floor)]

    def line(self) -> str:
        ratios = self.ratios()
        scale = 1000 if self.unit == "ms" else 1
        return (f"{self.name:<58} {statistics.median(self.subject) * scale:9.1f} {self.unit:<3} "
                f"vs {self.floor_name} {statistics.median(self.floor) * scale:.1f} {self.unit}: "
                f"{statistics.median(ratios):5.2f}x [{min(ratios):.2f}-{max(ratios):.2f}, {len(ratios)} rounds]"
                f"{'  target ' + self.target if self.target else ''}")


def paired(name: str, subject: Callable[[], float], floor_name: str, floor: Callable[[], float], rounds: int,
           unit: str = "ms", target: str = "") -> Figure:
    """Measure floor and subject alternately, `rounds` times each (after one warm-up of each)."""
    floor(), subject()
    floors, subjects = [], []
    for _ in range(rounds):
        floors.append(floor())
        subjects.append(subject())
    figure = Figure(name, floor_name, subjects, floors, unit, target)
    print(figure.line(), flush=True)
    return figure


def timed(action: Callable[[], object]) -> Callable[[], float]:
    """Return a function that runs `action` and returns its wall time in seconds."""
    def run() -> float:
        start = time.perf_counter()
        action()
        return time.perf_counter() - start
    return run


def cpu_timed(action: Callable[[], object]) -> Callable[[], float]:
    """Return a function that runs `action` and returns the CPU time this process spent on it
    (the in-process twin of `process_cpu`, for figures paired with a native tool's CPU time)."""
    def run() -> float:
        start = time.process_time()
        action()
        return time.process_time() - start
    return run


def process(argv: Sequence[str], check_codes: tuple[int, ...] = (0, 1)) -> Callable[[], float]:
    """Return a function that runs a command to completion (output discarded) and returns its
    wall time in seconds. Raise SystemExit if it fails."""
    def run() -> float:
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, env=ENV)
        elapsed = time.perf_counter() - start
        if done.returncode not in check_codes:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-400:]}")
        return elapsed
    return run


def process_cpu(argv: Sequence[str]) -> Callable[[], float]:
    """Return a function that runs a command and returns the CPU time (user + system, seconds) it
    used: on a loaded machine a process waits for a core for a share of its wall time that has
    nothing to do with it, while its CPU time moves much less."""
    def run() -> float:
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=ENV)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(argv)} failed ({child.returncode})")
        return usage.ru_utime + usage.ru_stime
    return run


def peak_rss(argv: Sequence[str]) -> Callable[[], float]:
    """Return a function that runs a command under GNU time and returns its peak RSS in MiB.

    Why GNU time: a child forked straight from this Python process would report this process's
    memory as its peak (ru_maxrss keeps the high-water mark from before exec)."""
    def run() -> float:
        done = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV)
        return int(done.stderr.strip().splitlines()[-1]) / 1024
    return run


def python(*args: str) -> list[str]:
    """The venv's interpreter with `args` (the floor of every start-up figure: `python("-c", "pass")`)."""
    return [sys.executable, *args]


def appban(*args: str) -> list[str]:
    return python("-m", "agent", *args)


def regular_install(work: Path) -> Path:
    """Install this checkout as a deployed agent has it, a wheel in a venv of its own, under
    `work`; return that venv's `bin` folder (its `python` is the floor, its `appban` the subject).

    Why not the checkout's `.venv`: `scripts/venv` installs appban editable, and setuptools'
    editable finder is imported by a `.pth` at every start of that interpreter (pathlib, re,
    fnmatch: ~22 ms), which inflates `python -c pass` threefold and hides the start-up cost of
    what `appban check` imports. The wheel is installed without dependencies; the new venv finds
    them in the checkout venv's site-packages through a path `.pth` (a plain path line: Python
    runs no `.pth` file of a folder added that way, so the editable finder stays out)."""
    venv, wheels = work / "regular-venv", work / "wheel"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
                   check=True, env=ENV)
    bin_dir = venv / "bin"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "-q", "--no-deps",
                    *map(str, wheels.glob("appban-*.whl"))], check=True, env=ENV)
    site = subprocess.run([str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    dependencies = dict.fromkeys(sysconfig.get_path(name) for name in ("purelib", "platlib"))
    Path(site, "appban-dependencies.pth").write_text("".join(f"{path}\n" for path in dependencies))
    return bin_dir
