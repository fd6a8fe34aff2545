"""Benchmark: `appban fleet serve` ingest over HTTP and `fleet status` at fleet scale.

Starts a real `appban fleet serve` (SQLite in a temp dir, or --database postgresql+psycopg://…),
enrolls N simulated devices, and pushes one report with a 100-app inventory per device from 4
concurrent senders: first ingest (every device new), an unchanged re-push (new report ids, same
content: diff on ingest writes only last_seen) and a changed re-push (one app upgraded and one
banned app removed). Prints reports/s, per-report cost as a multiple of a /healthz round trip
measured in the same run (the floor), the unchanged-vs-changed cost ratio, the server's peak RSS,
then `status` (the query and GET /api/v1/status) over a database holding --status-devices devices.
Each phase runs --rounds times over fresh report ids; medians and spreads are printed.

Run: .venv/bin/python benchmarks/fleet_ingest.py            (quick: 500 devices, status at 5,000)
     .venv/bin/python benchmarks/fleet_ingest.py --full     (10,000 devices, status at 100,000)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.fleet import query  # noqa: E402
from agent.fleet.store import Store  # noqa: E402
from agent.fleet.verdict import judge  # noqa: E402
from agent.model import App, Device, Inventory  # noqa: E402
from tests.fleet_support import ADMIN_TOKEN, ENROLL_SECRET, FleetServer, write_fleet_config  # noqa: E402

SENDERS = 4
APPS = 100


def report(device: str, version: str = "1.0", banned: bool = True) -> bytes:
    """One pushed report: 100 dpkg apps from a shared pool of 2,000, TikTok on every 10th device."""
    number = int(device.rsplit("-", 1)[1])
    apps = [{"source": "dpkg", "id": f"pkg-{(number * 7 + i) % 2000}", "name": f"pkg-{(number * 7 + i) % 2000}",
             "version": version if i == 0 else "1.0", "device": device} for i in range(APPS - 1)]
    if banned and number % 10 == 0:
        apps.append({"source": "dpkg", "id": "tiktok-desktop", "name": "tiktok-desktop", "device": device})
    return json.dumps({
        "format": "appban.report/v1", "id": str(uuid.uuid4()), "agent": {"version": "bench"},
        "banlist": {"serial": 7}, "devices": [{"id": device, "groups": ["staff"]}], "findings": [],
        "inventory": {"format": "appban.inventory/v1", "devices": [{"id": device, "groups": ["staff"]}], "apps": apps},
    }).encode()


def push_all(url: str, bodies: list[tuple[str, bytes]], tokens: dict[str, str]) -> float:
    """Push every body from SENDERS threads; return the wall time. Every answer must be 200."""
    def send(chunk: list[tuple[str, bytes]]) -> None:
        with requests.Session() as session:
            for device, body in chunk:
                answer = session.post(f"{url}/v1/reports", data=body, timeout=120, headers={
                    "Authorization": f"Bearer {tokens[device]}", "Content-Type": "application/json"})
                assert answer.status_code == 200, answer.text

    chunks = [bodies[n::SENDERS] for n in range(SENDERS)]
    start = time.perf_counter()
    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(send, chunks))
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    """The server's user + system CPU time so far (what ingest costs the server, not the senders)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f} (min {min(values):.1f}, max {max(values):.1f})"


def fill(store: Store, fleet_policy, devices: int) -> None:
    """Put `devices` devices (10 apps each, TikTok on every 10th) straight into the store."""
    now = time.time()
    stamp = datetime.fromtimestamp(now, timezone.utc)
    for start in range(0, devices, 1000):
        apps, listed = [], []
        for n in range(start, min(start + 1000, devices)):
            device = f"bulk-{n}"
            listed.append(Device(device, groups=("staff",)))
            apps += [App("dpkg", f"pkg-{(n + i) % 500}", device=device) for i in range(9)]
            if n % 10 == 0:
                apps.append(App("dpkg", "tiktok-desktop", device=device))
        store.ingest(judge(fleet_policy, Inventory(tuple(listed), tuple(apps)), {}, stamp), "import", now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--status-devices", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", default="", help="postgresql+psycopg://… (default: SQLite in a temp dir)")
    parser.add_argument("--postgres", action="store_true",
                        help="start a throwaway PostgreSQL 15 cluster (as the tests do) and use it")
    parser.add_argument("--full", action="store_true", help="the issue's size: 10,000 devices, status at 100,000")
    args = parser.parse_args()
    if args.full:
        args.devices, args.status_devices = 10_000, 100_000
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    if args.postgres:
        from tests.postgres import throwaway_cluster

        with throwaway_cluster() as url:
            args.database = url
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    """Run every phase against args.database (SQLite when empty)."""

    with tempfile.TemporaryDirectory(prefix="appban-fleet-bench-") as tmp:
        config = write_fleet_config(Path(tmp), database=args.database, logging={"format": "json", "level": "warning"})
        fleet = FleetServer(config)
        try:
            pid = fleet.process.pid
            devices = [f"dev-{n}" for n in range(args.devices)]
            with requests.Session() as session:
                tokens = {d: session.post(f"{fleet.url}/v1/enroll", json={"secret": ENROLL_SECRET, "device": d},
                                          timeout=30).json()["token"] for d in devices}
                floor_times = []
                before = cpu_seconds(pid)
                for _ in range(500):
                    start = time.perf_counter()
                    session.get(f"{fleet.url}/healthz", timeout=10)
                    floor_times.append(time.perf_counter() - start)
                floor_cpu = (cpu_seconds(pid) - before) / 500 * 1000
            floor = statistics.median(floor_times)
            print(f"fleet ingest: {args.devices} devices x {APPS} apps, {SENDERS} concurrent senders, "
                  f"{'PostgreSQL' if args.database else 'SQLite'}; floor = GET /healthz round trip "
                  f"{floor * 1000:.2f} ms")
            first = push_all(fleet.url, [(d, report(d)) for d in devices], tokens)
            print(f"  first ingest   {args.devices / first:7.0f} reports/s  "
                  f"({first / args.devices / floor:.1f}x floor per report)")
            results: dict[str, list[float]] = {"unchanged": [], "changed": []}
            cpu: dict[str, list[float]] = {"unchanged": [], "changed": []}
            for round_number in range(args.rounds):
                for kind in ("unchanged", "changed"):
                    version = f"2.{round_number}" if kind == "changed" else None
                    bodies = [(d, report(d) if version is None else report(d, version, banned=round_number % 2 == 1))
                              for d in devices]
                    if kind == "unchanged" and round_number:
                        bodies = [(d, report(d, f"2.{round_number - 1}", banned=(round_number - 1) % 2 == 1))
                                  for d in devices]
                    before = cpu_seconds(pid)
                    results[kind].append(args.devices / push_all(fleet.url, bodies, tokens))
                    cpu[kind].append((cpu_seconds(pid) - before) / args.devices * 1000)
            for kind, rates in results.items():
                print(f"  {kind:<9} re-push: reports/s {spread(rates)}; "
                      f"{1 / statistics.median(rates) / floor:.1f}x floor per report")
            for kind, costs in cpu.items():
                print(f"  {kind:<9} re-push: server CPU ms per report {spread(costs)} "
                      f"= {statistics.median(costs) / max(floor_cpu, 1e-9):.1f}x a bare GET /healthz ({floor_cpu:.2f} ms)")
            ratio = statistics.median(results["unchanged"]) / statistics.median(results["changed"])
            cost = statistics.median(cpu["changed"]) / max(statistics.median(cpu["unchanged"]), 1e-9)
            print(f"  unchanged re-push is {cost:.1f}x cheaper in server CPU than a changed one (target >= 5x), "
                  f"{ratio:.1f}x in wall time (HTTP and the senders included)")
            print(f"  server peak RSS {peak_rss_mb(pid):.0f} MB (target < 150 MB)")
        finally:
            fleet.stop()

        store = Store(args.database or f"sqlite:///{Path(tmp) / 'fleet-state' / 'fleet.sqlite'}")
        from agent.fleet.server import load_policy
        from agent.fleet.config import load_fleet_config

        fleet_config = load_fleet_config(str(config))
        start = time.perf_counter()
        fill(store, load_policy(fleet_config, datetime.now(timezone.utc), fresh=False), args.status_devices)
        print(f"status over {args.status_devices + args.devices} devices (filled in {time.perf_counter() - start:.0f} s):")
        times = []
        for _ in range(max(args.rounds, 5)):
            start = time.perf_counter()
            with store.read() as connection:
                document = query.status(connection, time.time(), 86400, ["tiktok", "wechat"])
            times.append((time.perf_counter() - start) * 1000)
        assert document["devices"]["total"] == args.status_devices + args.devices
        print(f"  status query ms {spread(times)} (target < 300 ms at 100,000)")
        store.close()
        fleet = FleetServer(config)
        try:
            times = []
            for _ in range(max(args.rounds, 5)):
                start = time.perf_counter()
                assert fleet.get("/api/v1/status", token=ADMIN_TOKEN).status_code == 200
                times.append((time.perf_counter() - start) * 1000)
            print(f"  GET /api/v1/status ms {spread(times)}; overview page ms ", end="")
            times = []
            for _ in range(max(args.rounds, 5)):
                start = time.perf_counter()
                page = requests.get(f"{fleet.url}/", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
                assert page.status_code == 200
                times.append((time.perf_counter() - start) * 1000)
            print(spread(times))
        finally:
            fleet.stop()


if __name__ == "__main__":
    main()
