"""Print the service's footprint: resident memory and CPU while idle and while scanning this
machine, and the pull endpoint's requests per second on loopback.

Targets (issue 6): under 40 MiB RSS, under 0.5 % of one core idle. The idle window is 60 s by
default; `--idle 300` measures the 5 minutes the issue names.

    .venv/bin/python benchmarks/daemon.py [--idle SECONDS] [--scan SECONDS] [--load SECONDS]
"""

from __future__ import annotations

import argparse
import http.client
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.service_support import TOKEN, Daemon, free_port, wait_until, write_config  # noqa: E402

MIB = 1024 * 1024


def measure(process: psutil.Process, seconds: float) -> tuple[float, float, float]:
    """Sample the process for `seconds`; return (CPU % of one core, mean RSS MiB, peak RSS MiB).

    RSS counts shared libraries (libssl, libpython) in full; `footprint` adds USS (pages of this
    process alone) and PSS (shared pages divided among the processes that map them).
    """
    cpu_before, started = process.cpu_times(), time.monotonic()
    rss = []
    while time.monotonic() - started < seconds:
        rss.append(process.memory_info().rss / MIB)
        time.sleep(min(1.0, seconds / 10))
    cpu_after, elapsed = process.cpu_times(), time.monotonic() - started
    used = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    return 100 * used / elapsed, statistics.mean(rss), max(rss)


def footprint(process: psutil.Process) -> str:
    """Return "USS x MiB, PSS y MiB" for the process."""
    full = process.memory_full_info()
    return f"USS {full.uss / MIB:.1f} MiB, PSS {full.pss / MIB:.1f} MiB"


def hammer(port: int, path: str, seconds: float, threads: int) -> float:
    """Request `path` from `threads` clients for `seconds`; return requests per second (all 200)."""
    done, failures = [0] * threads, []
    deadline = time.monotonic() + seconds

    def client(slot: int) -> None:
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status != 200:
                failures.append(response.status)
            done[slot] += 1

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise SystemExit(f"{path}: {len(failures)} non-200 answers, e.g. {failures[0]}")
    return sum(done) / seconds


def idle_rss(work: Path, settle: float = 3.0) -> float:
    """Start `appban run` (pull endpoint on, every collector, this machine), wait for its first
    scan, let it settle, and return its resident memory in MiB (the median of a few samples)."""
    folder = Path(tempfile.mkdtemp(prefix="idle-", dir=work))
    server = {"listen": f"127.0.0.1:{free_port()}", "token_file": str(folder / "token")}
    daemon = Daemon(write_config(folder, server=server, inventory={"root": "/", "sources": []},
                                 logging={"format": "json", "level": "info"}))
    try:
        wait_until(lambda: daemon.events("scan.done"), timeout=120)
        process = psutil.Process(daemon.process.pid)
        samples = []
        for _ in range(5):
            time.sleep(settle / 5)
            samples.append(process.memory_info().rss / MIB)
        return statistics.median(samples)
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=float, default=60.0, help="idle window in seconds (issue: 300)")
    parser.add_argument("--scan", type=float, default=10.0, help="window of back-to-back scans in seconds")
    parser.add_argument("--load", type=float, default=5.0, help="seconds of load per endpoint path")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="appban-bench-") as folder:
        work, port = Path(folder), free_port()
        server = {"listen": f"127.0.0.1:{port}", "token_file": str(work / "token")}
        config = write_config(work, server=server, inventory={"root": "/", "sources": []},
                              logging={"format": "json", "level": "info"})
        daemon = Daemon(config)
        try:
            wait_until(lambda: daemon.events("scan.done"), timeout=120)
            process = psutil.Process(daemon.process.pid)
            first = daemon.events("scan.done")[0]
            print(f"first scan of this machine: {first['apps']} apps, {first['seconds']:.3f} s")

            cpu, rss, peak = measure(process, args.idle)
            print(f"idle {args.idle:.0f} s:   CPU {cpu:.3f} % of one core, RSS mean {rss:.1f} MiB, peak {peak:.1f} MiB, "
                  f"{footprint(process)}   (targets: < 0.5 %, < 40 MiB)")

            data = yaml.safe_load(config.read_text())
            data["schedule"] = {"scan": "1s", "push": "1h", "splay": "1s"}
            config.write_text(yaml.safe_dump(data))
            daemon.signal(signal.SIGHUP)
            wait_until(lambda: daemon.events("config.reloaded"))
            before = len(daemon.events("scan.done"))
            cpu, rss, peak = measure(process, args.scan)
            scans = daemon.events("scan.done")[before:]
            seconds = [e["seconds"] for e in scans] or [0.0]
            print(f"scanning {args.scan:.0f} s: CPU {cpu:.1f} % of one core, RSS mean {rss:.1f} MiB, peak {peak:.1f} MiB, "
                  f"{len(scans)} scans, median {statistics.median(seconds):.3f} s each")

            for path in ("/healthz", "/metrics", "/v1/report"):
                rps = hammer(port, path, args.load, args.clients)
                print(f"GET {path:<11} {rps:8.0f} requests/s ({args.clients} clients, new connection each)")
            print(f"after load: RSS {process.memory_info().rss / MIB:.1f} MiB, {footprint(process)}")
            daemon.signal(signal.SIGTERM)
            print(f"exit code after SIGTERM: {daemon.wait()}")
        finally:
            daemon.stop()


if __name__ == "__main__":
    main()
