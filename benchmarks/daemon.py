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
from tests.banlist_servers import make_pki  # noqa: E402
from tests.service_support import TOKEN, Daemon, Receiver, free_port, wait_until, write_config  # noqa: E402

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


def get(port: int, path: str) -> int:
    """GET `path` from the endpoint with the token, on a new connection; return the status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def hammer(port: int, path: str, seconds: float, threads: int) -> float:
    """Request `path` from `threads` clients for `seconds`; return requests per second (all 200)."""
    done, failures = [0] * threads, []
    deadline = time.monotonic() + seconds

    def client(slot: int) -> None:
        while time.monotonic() < deadline:
            status = get(port, path)
            if status != 200:
                failures.append(status)
            done[slot] += 1

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise SystemExit(f"{path}: {len(failures)} non-200 answers, e.g. {failures[0]}")
    return sum(done) / seconds


def idle_rss(work: Path, settle: float = 3.0, scrapes: int = 0, push: bool = False) -> float:
    """Start `appban run` (pull endpoint on, every collector, this machine), wait for its first
    scan, let it settle, and return its resident memory in MiB (the median of a few samples).

    `scrapes`: GET /metrics that many times after the first scan, as Prometheus would (the first
    scrape loads whatever renders the metrics). `push`: also push to a local HTTPS receiver
    with a client certificate, and wait for the first report delivered (requests and TLS loaded).
    """
    folder = Path(tempfile.mkdtemp(prefix="idle-", dir=work))
    port = free_port()
    sections: dict = {"server": {"listen": f"127.0.0.1:{port}", "token_file": str(folder / "token")}}
    receiver = Receiver(make_pki(folder / "pki")) if push else None
    if receiver is not None:
        pki = receiver.pki
        sections["push"] = {"url": receiver.url, "token_file": str(folder / "push-token"), "ca_bundle": str(pki.ca),
                            "client_cert": str(pki.client_cert), "client_key": str(pki.client_key)}
        receiver.start()
    daemon = Daemon(write_config(folder, inventory={"root": "/", "sources": []},
                                 logging={"format": "json", "level": "info"}, **sections))
    try:
        wait_until(lambda: daemon.events("scan.done") and (receiver is None or daemon.events("push.sent")),
                   timeout=120)
        for _ in range(scrapes):
            if (status := get(port, "/metrics")) != 200:
                raise SystemExit(f"/metrics answered {status}")
        process = psutil.Process(daemon.process.pid)
        samples = []
        for _ in range(5):
            time.sleep(settle / 5)
            samples.append(process.memory_info().rss / MIB)
        return statistics.median(samples)
    finally:
        daemon.stop()
        if receiver is not None:
            receiver.stop()


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
