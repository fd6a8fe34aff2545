"""Benchmark: `appban fleet serve` ingest over HTTP and `fleet status` at fleet scale.

Starts a real `appban fleet serve` (SQLite in a temp dir, --postgres for a throwaway PostgreSQL 15
cluster, or --database postgresql+psycopg://…), enrolls N simulated devices, and pushes one report
with a 100-app inventory per device from 4 concurrent senders: first ingest (every device new, in
--rounds slices), then --rounds times an unchanged re-push (new report ids, same content: diff on
ingest writes only the sighting) and a changed re-push (one app upgraded, TikTok removed or back on
every 10th device). The unchanged re-push is sent as agents send it: the inventory replaced by the
digest the fleet answered last time (the agent's own `differential_body`); the same re-push with
the whole inventory, as agents before the differential push send it, is measured too. Prints reports/s (wall, senders included) against a GET /healthz round trip
measured in the same run, the server's CPU per report against a bare POST of the same size that it
does not read, the unchanged-vs-changed CPU ratio, the pushes per group-commit transaction (from the
server's /metrics: with 4 senders a group holds at most 4), with PostgreSQL on this machine also
the database's own CPU per report (with SQLite it is inside the server's), the server's peak RSS;
then `status` (the query,
GET /api/v1/status and the overview page) over --status-devices more devices. Medians and spreads
(lowest-highest round) are printed, with the machine's load average before and after.

Run: .venv/bin/python benchmarks/fleet_ingest.py                  (quick: 500 devices, status at 5,500)
     .venv/bin/python benchmarks/fleet_ingest.py --devices 10000  (the issue's run: status at 100,000)
     add --postgres for PostgreSQL
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
from agent.report.outbox import Acknowledged  # noqa: E402
from agent.report.push import differential_body, inventory_digest  # noqa: E402
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


def as_agents_send(body: bytes, digest: str) -> bytes:
    """An unchanged report as an agent sends it: its inventory replaced by the fleet's digest."""
    inventory = json.loads(body)["inventory"]
    differential, _ = differential_body(body, Acknowledged(inventory_digest(inventory), digest))
    assert differential is not None
    return differential


def push_all(url: str, bodies: list[tuple[str, bytes]], tokens: dict[str, str], digests: dict[str, str]) -> float:
    """Push every body from SENDERS threads; return the wall time. Every answer must be 200;
    the inventory digest each answers is put in `digests`."""
    def send(chunk: list[tuple[str, bytes]]) -> None:
        with requests.Session() as session:
            for device, body in chunk:
                answer = session.post(f"{url}/v1/reports", data=body, timeout=120, headers={
                    "Authorization": f"Bearer {tokens[device]}", "Content-Type": "application/json"})
                assert answer.status_code == 200, answer.text
                digests[device] = answer.json()["inventory_digest"]

    chunks = [bodies[n::SENDERS] for n in range(SENDERS)]
    start = time.perf_counter()
    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(send, chunks))
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    """The server's user + system CPU time so far (what ingest costs the server, not the senders)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_cpu(url: str):
    """For a PostgreSQL on this machine, return a function giving its CPU seconds so far (the
    postmaster, every live backend and, through the postmaster's children counters, every backend
    that exited): with SQLite the database's work is in the server's own CPU, with PostgreSQL it
    is in other processes, so the server's figure alone would leave it out. None when the
    database is elsewhere or cannot be asked."""
    if not url.startswith("postgresql"):
        return None
    import psycopg

    try:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=10) as connection:
            backend = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        postmaster = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (psycopg.Error, OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")

    def seconds() -> float:
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(stat.parent.name)
            if pid == postmaster:
                total += sum(int(f) for f in fields[11:15])  # its own time and its reaped children's
            elif int(fields[1]) == postmaster:
                total += int(fields[11]) + int(fields[12])
        return total / ticks

    return seconds


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def spread(values: list[float], digits: int = 1) -> str:
    return (f"median {statistics.median(values):.{digits}f} "
            f"[{min(values):.{digits}f}-{max(values):.{digits}f}, {len(values)} rounds]")


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
    parser.add_argument("--devices", type=int, default=500, help="simulated agents (the issue's full run: 10000)")
    parser.add_argument("--status-devices", type=int, default=None,
                        help="devices added for the status figures (default: up to 100,000 in all with "
                             "--devices 10000 or more, else 5,000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", default="", help="postgresql+psycopg://… (default: SQLite in a temp dir)")
    parser.add_argument("--postgres", action="store_true",
                        help="start a throwaway PostgreSQL 15 cluster (as the tests do, but with fsync on) and use it")
    parser.add_argument("--full", action="store_true", help="the issue's size: --devices 10000")
    args = parser.parse_args()
    if args.full:
        args.devices = max(args.devices, 10_000)
    if args.status_devices is None:
        args.status_devices = 100_000 - args.devices if args.devices >= 10_000 else 5_000
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    print(f"load average before the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    if args.postgres:
        from tests.postgres import throwaway_cluster

        with throwaway_cluster(fsync=True) as url:
            args.database = url
            run(args)
    else:
        run(args)
    print(f"load average after the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


class Pushes:
    """The ingest phases against one running server, each measured as reports/s (wall, the
    senders included) and server CPU ms per report."""

    def __init__(self, url: str, pid: int, tokens: dict[str, str], database) -> None:
        self.url, self.pid, self.tokens, self.database = url, pid, tokens, database
        self.rates: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}
        self.db_cpu: dict[str, list[float]] = {}
        self.grouped: dict[str, list[float]] = {}
        self.sizes: dict[str, float] = {}
        self.digests: dict[str, str] = {}

    def phase(self, kind: str, bodies: list[tuple[str, bytes]]) -> None:
        groups = self.commits()
        self.sizes[kind] = statistics.mean(len(body) for _, body in bodies)
        before, db_before = cpu_seconds(self.pid), self.database() if self.database else 0.0
        self.rates.setdefault(kind, []).append(len(bodies) / push_all(self.url, bodies, self.tokens, self.digests))
        self.cpu.setdefault(kind, []).append((cpu_seconds(self.pid) - before) / len(bodies) * 1000)
        if self.database:
            self.db_cpu.setdefault(kind, []).append((self.database() - db_before) / len(bodies) * 1000)
        transactions, pushes = (after - first for after, first in zip(self.commits(), groups))
        self.grouped.setdefault(kind, []).append(pushes / max(transactions, 1))

    def commits(self) -> tuple[float, float]:
        """The server's group-commit counters (transactions, pushes), read outside the measured window."""
        samples = {}
        text = requests.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60).text
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            samples[name] = value
        return (float(samples.get("appban_fleet_ingest_commits_total", 0)),
                float(samples.get("appban_fleet_ingest_committed_pushes_total", 0)))

    def floor_cpu(self, bodies: list[bytes], rounds: int) -> list[float]:
        """Server CPU ms of a bare POST of the same bodies, answered without reading them (405
        from /healthz): what receiving such a request costs before any ingest work."""
        costs = []
        with requests.Session() as session:
            for _ in range(rounds):
                before = cpu_seconds(self.pid)
                for body in bodies:
                    assert session.post(f"{self.url}/healthz", data=body, timeout=30).status_code == 405
                costs.append((cpu_seconds(self.pid) - before) / len(bodies) * 1000)
        return costs


PHASES = {"first": "first", "unchanged": "unchanged, as agents send it (inventory digest in place of the inventory)",
          "whole": "unchanged with the whole inventory (agents before the differential push)", "changed": "changed"}


def print_pushes(pushes: Pushes, floor: float, floor_cpu: list[float]) -> None:
    """Print each phase's figures and the unchanged-vs-changed ratios (the target's with the
    differential push, and the whole re-push's)."""
    bare = statistics.median(floor_cpu)
    for kind, label in PHASES.items():
        rates, costs = pushes.rates[kind], pushes.cpu[kind]
        print(f"  {label}: {pushes.sizes[kind] / 1024:.1f} KiB a report")
        print(f"  {'':<4}reports/s {spread(rates)}, {1 / statistics.median(rates) / floor:.1f}x floor; "
              f"server CPU ms per report {spread(costs, 2)}; pushes per transaction "
              f"{statistics.median(pushes.grouped[kind]):.1f}")
        if pushes.database:
            print(f"  {'':<4}PostgreSQL's own CPU ms per report {spread(pushes.db_cpu[kind], 2)}")
    print(f"  bare POST of a report's size, not read (405): server CPU ms {spread(floor_cpu, 2)}")
    changed = statistics.median(pushes.cpu["changed"])
    for kind, what in (("unchanged", "unchanged re-push as agents send it"), ("whole", "whole unchanged re-push")):
        unchanged = statistics.median(pushes.cpu[kind])
        ratios = [c / max(u, 1e-9) for u, c in zip(pushes.cpu[kind], pushes.cpu["changed"])]
        print(f"  {what} is {statistics.median(ratios):.1f}x cheaper in server CPU than a changed one "
              f"[{min(ratios):.1f}-{max(ratios):.1f}, {len(ratios)} rounds]"
              f"{' (target >= 5x)' if kind == 'unchanged' else ''}; "
              f"above the bare POST: {(changed - bare) / max(unchanged - bare, 1e-9):.1f}x; in wall time "
              f"{statistics.median(pushes.rates[kind]) / statistics.median(pushes.rates['changed']):.1f}x")
        if pushes.database:
            both = [(c + dc) / max(u + du, 1e-9) for u, c, du, dc in zip(
                pushes.cpu[kind], pushes.cpu["changed"], pushes.db_cpu[kind], pushes.db_cpu["changed"])]
            print(f"  {'':<4}with PostgreSQL's CPU added: {statistics.median(both):.1f}x cheaper "
                  f"[{min(both):.1f}-{max(both):.1f}]")


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
                for _ in range(500):
                    start = time.perf_counter()
                    session.get(f"{fleet.url}/healthz", timeout=10)
                    floor_times.append(time.perf_counter() - start)
            floor = statistics.median(floor_times)
            print(f"fleet ingest: {args.devices} devices x {APPS} apps, {SENDERS} concurrent senders, "
                  f"{'PostgreSQL' if args.database else 'SQLite'}; floor = GET /healthz round trip "
                  f"{floor * 1000:.2f} ms")
            pushes = Pushes(fleet.url, pid, tokens, database_cpu(args.database))
            slices = [devices[n::args.rounds] for n in range(args.rounds)]  # first ingest: one slice per round
            for part in slices:
                pushes.phase("first", [(d, report(d)) for d in part])
            for round_number in range(args.rounds):
                # unchanged: the content of the last push again; changed: one app upgraded, TikTok
                # removed or back on every 10th device.
                last = (f"2.{round_number - 1}", (round_number - 1) % 2 == 1) if round_number else ("1.0", True)
                same = [(d, report(d, *last)) for d in devices]
                pushes.phase("unchanged", [(d, as_agents_send(body, pushes.digests[d])) for d, body in same])
                pushes.phase("whole", same)
                pushes.phase("changed", [(d, report(d, f"2.{round_number}", round_number % 2 == 1)) for d in devices])
            floor_cpu = pushes.floor_cpu([report(d) for d in devices[:500]], args.rounds)
            print_pushes(pushes, floor, floor_cpu)
            print(f"  server peak RSS {peak_rss_mb(pid):.0f} MB (target < 150 MB)")
        finally:
            fleet.stop()
        status_figures(args, config, Path(tmp))


def status_figures(args: argparse.Namespace, config: Path, tmp: Path) -> None:
    """Fill the store to args.status_devices more devices, then time the status query, the API
    and the overview page (a fresh server: its peak RSS is printed too)."""
    from agent.fleet.config import load_fleet_config
    from agent.fleet.server import load_policy

    store = Store(args.database or f"sqlite:///{tmp / 'fleet-state' / 'fleet.sqlite'}")
    start = time.perf_counter()
    fill(store, load_policy(load_fleet_config(str(config)), datetime.now(timezone.utc), fresh=False),
         args.status_devices)
    total = args.status_devices + args.devices
    print(f"status over {total} devices (filled in {time.perf_counter() - start:.0f} s):")
    times = []
    for _ in range(max(args.rounds, 5)):
        start = time.perf_counter()
        with store.read() as connection:
            document = query.status(connection, time.time(), 86400, ["tiktok", "wechat"])
        times.append((time.perf_counter() - start) * 1000)
    assert document["devices"]["total"] == total
    print(f"  status query ms {spread(times)} (target < 300 ms at 100,000)")
    store.close()
    fleet = FleetServer(config)
    try:
        api, page = [], []
        for _ in range(max(args.rounds, 5)):
            start = time.perf_counter()
            assert fleet.get("/api/v1/status", token=ADMIN_TOKEN).status_code == 200
            api.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            answer = requests.get(f"{fleet.url}/", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
            assert answer.status_code == 200
            page.append((time.perf_counter() - start) * 1000)
        print(f"  GET /api/v1/status ms {spread(api)}; overview page ms {spread(page)}; "
              f"server peak RSS {peak_rss_mb(fleet.process.pid):.0f} MB")
    finally:
        fleet.stop()


if __name__ == "__main__":
    main()
