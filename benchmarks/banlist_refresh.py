"""Benchmark: what a ban-list refresh costs, against real nginx over HTTPS on 127.0.0.1.

Prints the time of a refresh answered 304 (the common case: one small conditional request, no
signature download, no cache write beyond the metadata) and of a full fetch + signature check +
parse + cache write of a 10,000-entry list, with the requests and bytes each one took.

Run: .venv/bin/python benchmarks/banlist_refresh.py [--entries N] [--rounds N]
Needs the Debian package nginx.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.banlist.signature import generate_keypair, sign  # noqa: E402
from agent.banlist import central  # noqa: E402
from agent.banlist.central import refresh  # noqa: E402
from agent.banlist.source import load_active  # noqa: E402
from agent.config import BanlistConfig, Config  # noqa: E402
from tests.banlist_servers import Nginx, make_pki  # noqa: E402


def big_list(entries: int, as_json: bool = False) -> bytes:
    """Return a ban list of `entries` entries, each with identifiers on several platforms."""
    document = {
        "format": "appban.banlist/v1", "serial": 1, "issued": "2026-11-01T00:00:00Z",
        "entries": [
            {"id": f"app-{n:05d}", "name": f"Banned App {n}", "vendor": "Example Vendor", "reason": "Benchmark entry",
             "match": {"android": [f"com.example.app{n}"], "windows": [f"Example.App{n}"],
                       "deb": [f"example-app-{n}"], "names": [f"Banned App {n}*"]}}
            for n in range(entries)
        ],
    }
    if as_json:
        return json.dumps(document, indent=1).encode()
    return yaml.safe_dump(document, sort_keys=False).encode()


def timed(action, rounds: int) -> tuple[float, object]:
    """Run `action` `rounds` times; return the median seconds and the last result."""
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def log_lines(nginx: Nginx) -> int:
    return len(nginx.access_log.read_text().splitlines()) if nginx.access_log.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"

    with tempfile.TemporaryDirectory(prefix="appban-bench-") as tmp:
        work = Path(tmp)
        nginx = Nginx(work, make_pki(work / "pki")).start()
        try:
            secret, public = generate_keypair()
            data = big_list(args.entries)
            for name, body in (("banlist.yaml", data), ("banlist.json", big_list(args.entries, as_json=True))):
                (nginx.docroot / name).write_bytes(body)
                (nginx.docroot / f"{name}.minisig").write_text(sign(body, secret, "benchmark"))
            settings = BanlistConfig(url=nginx.url("banlist.yaml"), trusted_keys=(public.to_base64(),),
                                     ca_bundle=str(nginx.pki.ca))
            now = datetime.now(timezone.utc)
            rounds = iter(range(10_000))

            def full_fetch(url: str):
                state = work / f"state-{next(rounds)}"
                central._PARSED.clear()  # measure the parse, not the in-process memo of the last list
                return refresh(Config(state_dir=str(state), banlist=replace(settings, url=url)), state, now)

            before = log_lines(nginx)
            full, result = timed(lambda: full_fetch(settings.url), args.rounds)
            assert result.error is None and result.changed, result.error
            full_requests = (log_lines(nginx) - before) / args.rounds
            full_json, result = timed(lambda: full_fetch(nginx.url("banlist.json")), args.rounds)
            assert result.error is None and result.changed, result.error

            state = work / "state-304"
            config = Config(state_dir=str(state), banlist=settings)
            assert refresh(config, state, now).error is None

            def cold_304():
                central._PARSED.clear()  # as in a freshly started agent: the cached list is parsed once
                return refresh(config, state, now)

            cold, _ = timed(cold_304, args.rounds)
            before = log_lines(nginx)
            not_modified, result = timed(lambda: refresh(config, state, now), args.rounds)
            assert result.not_modified, result
            small_requests = (log_lines(nginx) - before) / args.rounds
            last = nginx.access_log.read_text().splitlines()[-1]

            load, _ = timed(lambda: load_active(config, None, now, state), args.rounds)
        finally:
            nginx.stop()

    print(f"ban list: {args.entries} entries, {len(data):,} bytes; nginx over HTTPS on 127.0.0.1; "
          f"median of {args.rounds} rounds")
    print(f"full fetch + verify + parse + cache write: {full * 1000:8.1f} ms  ({full_requests:g} requests)")
    print(f"  the same list as JSON:                   {full_json * 1000:8.1f} ms")
    print(f"refresh answered 304:                      {not_modified * 1000:8.1f} ms  ({small_requests:g} request; "
          f"nginx log: {last.split('] ')[1]})")
    print(f"  first refresh after start, 304 + parsing the cached list once: {cold * 1000:.1f} ms")
    print(f"load_active from the cache (after refresh): {load * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
