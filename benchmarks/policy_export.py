"""Benchmark: `appban policy export` of a 10,000-entry list to every kind.

Each entry has an Android and iOS id, a Store package name, a sha256, a `*.` domain and an exact
one, so every renderer has work. Prints, per kind, the median seconds of selecting and rendering
(and the spread of the rounds), its ratio to a floor measured in the same run (the venv's own
interpreter starting and exiting: `python -c pass`), and the output size. The goal: well under a
second per kind.

Run: .venv/bin/python benchmarks/policy_export.py [--entries N] [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.banlist.parse import parse_banlist  # noqa: E402
from agent.export import EXPORTERS  # noqa: E402
from agent.export.common import Provenance, select  # noqa: E402

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


def big_list(entries: int) -> bytes:
    """Return a ban list of `entries` entries, half for group staff, with ids, hashes and domains."""
    document = {
        "format": "appban.banlist/v1", "serial": 1, "issued": "2026-11-01T00:00:00Z",
        "entries": [
            {"id": f"app-{n:05d}", "name": f"Banned App {n}", "vendor": "Example Vendor",
             **({"applies_to": ["staff"]} if n % 2 else {}),
             "match": {"android": [f"com.example.App{n}"], "ios": [f"com.example.ios{n}"],
                       "windows": [f"Example.App{n}"], "sha256": [f"{n:064x}"],
                       "domains": [f"*.service{n}.example", f"api.other{n}.example"]}}
            for n in range(entries)
        ],
    }
    return yaml.safe_dump(document, sort_keys=False).encode()


def rounds_of(action, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    banlist = parse_banlist(big_list(args.entries))
    provenance = Provenance(serial=1, command="benchmarks/policy_export.py")
    floor_times = rounds_of(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), args.rounds)
    floor = statistics.median(floor_times)
    selection_times = rounds_of(lambda: select(banlist, ("staff",), NOW, provenance), args.rounds)
    selection = select(banlist, ("staff",), NOW, provenance)
    print(f"{args.entries} entries, {len(selection.entries)} in scope for group staff; "
          f"floor (python -c pass): {floor * 1000:.0f} ms")
    print(f"{'select':<17} {statistics.median(selection_times) * 1000:7.1f} ms  "
          f"(spread {min(selection_times) * 1000:.1f}-{max(selection_times) * 1000:.1f})  "
          f"{statistics.median(selection_times) / floor:5.2f}x floor")
    for kind, render in EXPORTERS:
        times = rounds_of(lambda: render(selection), args.rounds)
        size = len(render(selection).text.encode())
        median = statistics.median(times)
        print(f"{kind:<17} {median * 1000:7.1f} ms  (spread {min(times) * 1000:.1f}-{max(times) * 1000:.1f})  "
              f"{median / floor:5.2f}x floor  {size / 1e6:6.2f} MB")


if __name__ == "__main__":
    main()
