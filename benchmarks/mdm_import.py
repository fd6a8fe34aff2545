"""How long `appban check --inventory` takes on a fleet-sized MDM export, and how much memory.

Generates an Intune AppInvRawData CSV of 10,000 devices with 100 apps each (a million rows,
drawn from a pool of 3,000 apps including some banned ones), then runs the real CLI on it as a
subprocess and prints its wall time, CPU time (the check is single-threaded, so on a busy machine
the CPU time is what it takes on an idle one) and peak resident memory. Target: under 10 s.

    .venv/bin/python benchmarks/mdm_import.py [--devices N] [--apps N] [--zip]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
HEADER = [
    "ApplicationKey", "ApplicationName", "ApplicationPublisher", "ApplicationShortVersion", "ApplicationVersion",
    "DeviceId", "DeviceName", "EmailAddress", "OSDescription", "OSVersion", "Platform", "Platform_loc",
    "UserId", "UserName",
]
BANNED = [
    ("com.zhiliaoapp.musically", "TikTok", "TikTok Pte. Ltd."), ("com.tencent.mm", "WeChat", "Tencent"),
    ("com.lemon.lvoverseas", "CapCut", "Bytedance Pte. Ltd."),
]


def generate(path: Path, devices: int, apps: int, seed: int = 5) -> int:
    """Write the export and return its row count."""
    rng = random.Random(seed)
    pool = [(f"com.vendor{i % 97}.app{i}", f"App number {i}", f"Vendor {i % 97}, Inc.") for i in range(3000)]
    rows = 0
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for number in range(devices):
            android = number % 3 != 0
            platform, version = ("Android", "14") if android else ("iOS", "17.1.2")
            device = [f"{number:08x}-1d2a-4c3b-9e8f-0a1b2c3d4e5f", f"PHONE-{number:05d}",
                      f"user{number}@example.gouv.qc.ca", platform, version, platform, platform,
                      f"{number:08x}-0000-4000-8000-000000000001", f"User {number}"]
            chosen = rng.sample(pool, apps - 1) + [rng.choice(BANNED) if number % 50 == 0 else rng.choice(pool)]
            for key, name, publisher in chosen:
                writer.writerow([key, name, publisher, "1.2.3", "123", *device])
                rows += 1
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--zip", action="store_true", help="wrap the CSV in a ZIP as Intune delivers it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="appban-mdm-bench-") as folder:
        export = Path(folder) / "AppInvRawData.csv"
        started = time.perf_counter()
        rows = generate(export, args.devices, args.apps)
        print(f"generated {rows:,} rows ({export.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s")
        if args.zip:
            zipped = export.with_suffix(".zip")
            with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.write(export, export.name)
            export.unlink()
            export = zipped
            print(f"zipped to {export.stat().st_size / 1e6:.0f} MB")
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "agent", "check", "--inventory", str(export), "--format", "json"],
            cwd=TOP, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(TOP)},
        )
        out, err = child.communicate()
        elapsed = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the check is the only child
    if child.returncode not in (0, 1):
        print(err.decode(), file=sys.stderr)
        return 1
    findings = out.count(b'"status":')
    print(f"appban check --inventory: {elapsed:.1f} s wall, {usage.ru_utime + usage.ru_stime:.1f} s CPU "
          f"(single-threaded: the wall time on an idle machine), peak memory {usage.ru_maxrss / 1024:.0f} MiB, "
          f"{findings} finding(s), exit {child.returncode} (target: under 10 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
