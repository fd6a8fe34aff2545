"""Benchmark: reading a fleet of Android phones from the Android Management API connector.

A stand-in AMAPI (tests/mdm_servers.py, plain http on 127.0.0.1, pages rendered once so the
server costs little) serves N devices with M application reports each, in pages of 100. A child
process reads them page by page with the amapi connector and matches each page against the
bundled ban list as it arrives (streamed: the fleet server stores each page, it never needs the
whole fleet in memory), and reports wall time, requests made and its own peak RSS.

The floors, measured in the same run by the same interpreter: a child that only downloads the
same pages with requests (no parsing, no records) — what the stand-in and the HTTP stack cost
alone — and one that also parses each page's JSON, which any client must. Medians of several rounds, with their spread, and the ratio to the floor.

Run: .venv/bin/python benchmarks/mdm_api.py            (quick: 2,000 devices x 80 apps)
     .venv/bin/python benchmarks/mdm_api.py --full     (20,000 devices x 80 apps; target < 200 MB)
     add --check to also run `appban check --source amapi`, which matches each page as it arrives
     too but keeps every device and finding for its report
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.mdm_servers import AmapiApp, Seen, StandIn, amapi_policy, reply, rsa_key, service_account_key  # noqa: E402

ENTERPRISE = "LCbench01"
PAGE = 100
_MARK = "@@@@@@@@"

READER = r"""
import json, resource, sys, time
from datetime import datetime, timezone
from agent.banlist.parse import parse_banlist
from agent.banlist.source import bundled_bytes
from agent.config import AmapiConfig
from agent.inventory.amapi import AmapiConnector
from agent.match import compile_banlist, match
settings = json.loads(sys.argv[1])
started = time.perf_counter()
compiled = compile_banlist(parse_banlist(bundled_bytes()))
connector = AmapiConnector(AmapiConfig(**settings))
devices = apps = findings = errors = 0
for page in connector.pages():
    by_id = {d.id: d for d in page.devices}
    findings += len(match(page.apps, by_id, compiled, datetime.now(timezone.utc)))
    devices, apps, errors = devices + len(page.devices), apps + len(page.apps), errors + len(page.errors)
print(json.dumps({"seconds": time.perf_counter() - started, "requests": connector.client.requests_made,
                  "devices": devices, "apps": apps, "findings": findings, "errors": errors,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

FLOOR = r"""
import json, resource, sys, time, requests
url, pages, parse = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "parse"
started = time.perf_counter()
session, token, count, size = requests.Session(), "", 0, 0
while True:
    params = {"pageSize": 100, **({"pageToken": token} if token else {})}
    body = session.get(url, params=params, headers={"Authorization": "Bearer standin-token-1"}, timeout=60).content
    count, size = count + 1, size + len(body)
    if parse:
        json.loads(body)
    token = str(count * 100) if count < pages else ""
    if not token:
        break
print(json.dumps({"seconds": time.perf_counter() - started, "requests": count, "mb": size / 1e6,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _report(number: int) -> dict[str, Any]:
    return {"packageName": f"org.example.app{number:03d}", "displayName": f"Example App {number}",
            "versionName": f"{number}.2.3", "versionCode": 1000 + number, "state": "INSTALLED",
            "installerPackageName": "com.android.vending", "applicationSource": "INSTALLED_FROM_PLAY_STORE",
            "packageSha256Hash": f"{number:064x}", "signingKeyCertFingerprints": ["1D:2C:A0:B4"]}


class BenchAmapi(AmapiApp):
    """The stand-in with every page rendered from one template: only the device names differ."""

    def __init__(self, devices: int, apps: int, public_key: Any) -> None:
        policy = f"enterprises/{ENTERPRISE}/policies/fleet"
        super().__init__(ENTERPRISE, [], {policy: amapi_policy(ENTERPRISE, "fleet")}, public_key)
        reports = [_report(n) for n in range(apps - 1)] + [{
            "packageName": "com.zhiliaoapp.musically", "displayName": "TikTok", "versionName": "35.1.2",
            "versionCode": 2023501020, "state": "INSTALLED"}]
        self.total = devices
        self.pages = -(-devices // PAGE)
        template = [{"name": f"enterprises/{ENTERPRISE}/devices/{_MARK}-{i:03d}", "policyName": policy,
                     "managementMode": "DEVICE_OWNER", "ownership": "COMPANY_OWNED", "state": "ACTIVE",
                     "hardwareInfo": {"manufacturer": "samsung", "model": "SM-G991B", "serialNumber": f"R58M{i:05d}"},
                     "softwareInfo": {"androidVersion": "14"}, "applicationReports": reports} for i in range(PAGE)]
        self.template = json.dumps(template)

    def _devices(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        start = int(seen.param("pageToken") or 0)
        body = '{"devices": ' + self.template.replace(_MARK, f"{start // PAGE:08d}")
        if start + PAGE < self.total:
            body += f', "nextPageToken": "{start + PAGE}"'
        return reply(200, (body + "}").encode())


def run_child(code: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def run_check(folder: Path, settings: dict[str, Any]) -> tuple[float, float, int]:
    """Run `appban check --source amapi` (which matches each page as it arrives and keeps the
    devices and findings for its report) and return (seconds, its own peak RSS in MiB, exit code).

    Under GNU time, as measure.peak_rss does: a child forked straight from this process (which
    holds the stand-in's pages) would report this process's memory as its peak."""
    import time

    import yaml

    config = Path(folder) / "agent.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(folder), "mdm": {"amapi": settings}}))
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "agent", "check", "--config", str(config),
                           "--source", "amapi", "--format", "json"], capture_output=True, cwd=ROOT, timeout=3600)
    peak = int(done.stderr.decode().strip().splitlines()[-1]) / 1024
    return time.perf_counter() - started, peak, done.returncode


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="20,000 devices (the issue's size)")
    parser.add_argument("--devices", type=int, help="device count (default 2,000; 20,000 with --full)")
    parser.add_argument("--apps", type=int, default=80)
    parser.add_argument("--rounds", type=int, help="rounds per measurement (default 3; 1 with --full)")
    parser.add_argument("--check", action="store_true",
                        help="also time `appban check --source amapi` (streamed; keeps devices and findings)")
    args = parser.parse_args()
    devices = args.devices or (20_000 if args.full else 2_000)
    rounds = args.rounds or (1 if args.full else 3)
    key = rsa_key()
    app = BenchAmapi(devices, args.apps, key.public_key())
    server = StandIn(app)
    app.token_uri = f"{server.url}/token"
    app.tokens.issue()  # standin-token-1, for the floor's raw downloads
    with tempfile.TemporaryDirectory(prefix="appban-mdm-api-bench-") as folder:
        settings = {"enterprise": ENTERPRISE, "base_url": server.url, "page_size": PAGE, "timeout": 120.0,
                    "credentials_file": str(service_account_key(Path(folder), key, app.token_uri))}
        url = f"{server.url}/v1/enterprises/{ENTERPRISE}/devices"
        try:
            floors = [run_child(FLOOR, url, str(app.pages), "raw") for _ in range(rounds)]
            parsed = [run_child(FLOOR, url, str(app.pages), "parse") for _ in range(rounds)]
            reads = [run_child(READER, json.dumps(settings)) for _ in range(rounds)]
            check = run_check(Path(folder), settings) if args.check else None
        finally:
            server.stop()
    last = reads[-1]
    floor_time = statistics.median(f["seconds"] for f in floors)
    read_time = statistics.median(r["seconds"] for r in reads)
    print(f"{devices:,} AMAPI devices x {args.apps} apps, pages of {PAGE}: {app.pages} pages, "
          f"{floors[-1]['mb']:.0f} MB of JSON")
    print(f"floor (download only, requests): {spread([f['seconds'] for f in floors])}, "
          f"peak RSS {max(f['rss_mb'] for f in floors):.0f} MiB")
    print(f"floor 2 (download + json.loads of each page): {spread([f['seconds'] for f in parsed])}, "
          f"peak RSS {max(f['rss_mb'] for f in parsed):.0f} MiB")
    print(f"amapi connector, streamed + matched per page: {spread([r['seconds'] for r in reads])}, "
          f"{last['requests']} requests (token + policy + {app.pages} pages), "
          f"{last['devices']:,} devices, {last['apps']:,} apps, {last['findings']:,} findings, {last['errors']} errors, "
          f"peak RSS {max(r['rss_mb'] for r in reads):.0f} MiB (target < 200 MiB)")
    if check is not None:
        print(f"appban check --source amapi (streamed, the report's devices and findings kept): {check[0]:.2f} s, "
              f"peak RSS {check[1]:.0f} MiB, exit {check[2]}")
    parse_time = statistics.median(f["seconds"] for f in parsed)
    print(f"ratio to the download floor: {read_time / floor_time:.2f}x, to download + parse: {read_time / parse_time:.2f}x "
          f"(the rest is building records and matching; a real API answers a page in ~0.1-1 s, this stand-in at once)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
