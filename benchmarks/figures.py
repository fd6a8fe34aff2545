"""The start-up, memory and scale figures of issue 14, each as a ratio to a floor measured in
the same run (rounds alternate floor and subject; the median ratio and its spread are printed).

    .venv/bin/python benchmarks/figures.py [--rounds N] [--only NAME ...] [--mdm-devices N]

Figures (NAME): startup (check, check --source dpkg vs `python -c pass`, both in a regular,
non-editable install of this checkout built for the run: measure.regular_install), dpkg (the collector vs
`dpkg-query -W` at 10,000 and 100,000 packages; `appban inventory --format json` at 100,000),
fleet (`check --inventory` 100,000 apps x `--banlist` 10,000 entries vs `json.load` of both),
banlist (a 10,000-entry list as YAML and as JSON vs `json.loads`), mdm (an Intune export of
N devices x 100 apps vs a bare csv.reader loop: time and peak memory; 10,000 devices is the
issue's 1M rows, the default 2,000 keeps the run short), idle (`appban run` resident memory
after its first scan, after three /metrics scrapes, and with push after a push, vs the bare
interpreter's). The exec guard's cost needs root and its own
set-up: benchmarks/enforcement.py.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from banlist_refresh import big_list  # noqa: E402 - the 10,000-entry list the refresh benchmark serves
from measure import (  # noqa: E402
    MIB, appban, cpu_timed, paired, peak_rss, process, process_cpu, python, regular_install, timed,
)

from agent.banlist.parse import parse_banlist  # noqa: E402
from agent.inventory.base import Context  # noqa: E402
from agent.inventory.dpkg import DpkgCollector  # noqa: E402

FLOOR = python("-c", "pass")


def startup(rounds: int, work: Path) -> None:
    """`appban check` as a deployed agent runs it (the console script of a regular install,
    measure.regular_install) against that venv's `python -c pass`."""
    bin_dir = regular_install(work)
    floor = [str(bin_dir / "python"), "-c", "pass"]
    print(f"  start-up floor: {floor[0]} (a regular install of this checkout)")
    for label, args, target in (("appban check (bundled list, this machine)", ("check",), "<= 6x"),
                                ("appban check --source dpkg", ("check", "--source", "dpkg"), "<= 4x")):
        subject = [str(bin_dir / "appban"), *args]
        paired(label, process(subject), "python -c pass", process(floor), rounds, target=target)
        paired(f"{label}: CPU time", process_cpu(subject), "python -c pass", process_cpu(floor), rounds,
               target=target)


def dpkg_root(work: Path, count: int) -> Path:
    """Write a synthetic dpkg database of `count` packages (shaped like real ones) under `work`."""
    from inventory import synthetic_status

    root = work / f"dpkg-{count}"
    admin = root / "var/lib/dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "updates").mkdir()
    (admin / "status").write_text(synthetic_status(count))
    return root


def dpkg(rounds: int, work: Path) -> None:
    """Each figure twice: wall time, and CPU time (which a loaded machine disturbs much less)."""
    for count in (10_000, 100_000):
        root = dpkg_root(work, count)
        ctx = Context(root=root, live=False)
        query = ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W"]
        native = process(query)
        paired(f"dpkg collector (in-process), {count:,} packages", timed(lambda: DpkgCollector().collect(ctx)),
               "dpkg-query -W", native, max(3, rounds // 2), target="<= 1.0x")
        paired(f"dpkg collector, {count:,} packages: CPU time", cpu_timed(lambda: DpkgCollector().collect(ctx)),
               "dpkg-query -W", process_cpu(query), max(3, rounds // 2), target="<= 1.0x")
    inventory = appban("inventory", "--root", str(root), "--source", "dpkg", "--format", "json")
    paired("appban inventory --source dpkg --format json, 100,000", process(inventory),
           "dpkg-query -W", native, max(3, rounds // 3), target="<= 2x")
    paired("appban inventory --format json, 100,000: CPU time", process_cpu(inventory),
           "dpkg-query -W", process_cpu(query), max(3, rounds // 3), target="<= 2x")


def inventory_document(apps: int, devices: int = 50) -> dict:
    """An `appban.inventory/v1` document of `apps` apps on `devices` devices, about 1 % banned."""
    records = []
    for j in range(apps):
        banned = j % 100 == 0
        records.append({"device": f"dev{j % devices}", "source": "dpkg", "id": f"example-app-{j}" if banned else f"pkg{j}",
                        "name": f"Package {j}", "version": "1.0", "publisher": f"Maintainer {j % 97}", "path": "",
                        "user": "", "aliases": [f"pkg{j}:amd64"], "extra": {"arch": "amd64"}})
    return {"format": "appban.inventory/v1", "devices": [{"id": f"dev{i}"} for i in range(devices)],
            "apps": records, "errors": [], "notes": []}


def fleet(rounds: int, work: Path) -> None:
    banlist, inventory = work / "banlist-10k.json", work / "inventory-100k.json"
    banlist.write_bytes(big_list(10_000, as_json=True))
    inventory.write_text(json.dumps(inventory_document(100_000), indent=2))
    loads = f"import json\nfor p in ({str(banlist)!r}, {str(inventory)!r}):\n    json.load(open(p))"
    check = appban("check", "--inventory", str(inventory), "--banlist", str(banlist), "--format", "json")
    paired("check --inventory 100,000 apps x --banlist 10,000 (JSON)", process(check),
           "python json.load both", process(python("-c", loads)), max(3, rounds // 3), target="<= 2x")
    paired("check --inventory 100,000 x --banlist 10,000: CPU time", process_cpu(check),
           "python json.load both", process_cpu(python("-c", loads)), max(3, rounds // 3), target="<= 2x")


def banlist(rounds: int) -> None:
    as_json, as_yaml = big_list(10_000, as_json=True), big_list(10_000)
    floor = timed(lambda: json.loads(as_json))
    paired("ban list 10,000 entries, JSON: parse_banlist", timed(lambda: parse_banlist(as_json)),
           "json.loads", floor, rounds)
    paired("ban list 10,000 entries, YAML: parse_banlist", timed(lambda: parse_banlist(as_yaml)),
           "json.loads", floor, max(3, rounds // 3), target="<= 0.5 s, or JSON preferred")


def mdm(rounds: int, work: Path, devices: int) -> None:
    from mdm_import import generate

    export = work / "AppInvRawData.csv"
    rows = generate(export, devices, 100)
    loop = (f"import csv\nwith open({str(export)!r}, newline='', encoding='utf-8-sig') as f:\n"
            "    for row in csv.reader(f): pass")
    check = appban("check", "--inventory", str(export), "--format", "json")
    count = max(3, rounds // 4)
    paired(f"MDM import {rows:,} rows: time", process(check), "csv.reader loop", process(python("-c", loop)),
           count, target="<= 2x")
    paired(f"MDM import {rows:,} rows: CPU time", process_cpu(check), "csv.reader loop",
           process_cpu(python("-c", loop)), count, target="<= 2x")
    paired(f"MDM import {rows:,} rows: peak RSS", peak_rss(check), "csv.reader loop", peak_rss(python("-c", loop)),
           count, unit="MiB", target="<= 100 MiB at 1M rows")


def idle(rounds: int, work: Path) -> None:
    """`appban run` with the pull endpoint on and every collector, after its first scan; then
    the same after Prometheus's first scrapes, and with push configured after a push as well."""
    from daemon import idle_rss

    def floor() -> float:
        return peak_rss(FLOOR)()

    target = "<= 30 MiB (the issue's 30 MB is 28.6 MiB)"
    for name, scrapes, push in (("appban run: idle RSS after the first scan", 0, False),
                                ("  the same after 3 /metrics scrapes", 3, False),
                                ("  with push, after a push and 3 scrapes", 3, True)):
        figure = paired(name, functools.partial(idle_rss, work, scrapes=scrapes, push=push), "python -c pass (peak RSS)",
                        floor, max(3, rounds // 4), unit="MiB", target=target)
        median = statistics.median(figure.subject)
        print(f"{'    in MB (10^6 bytes)':<58} {median * MIB / 1e6:9.1f} MB")


SECTIONS = ("startup", "dpkg", "fleet", "banlist", "mdm", "idle")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="rounds for the quick figures (others use fewer)")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only this figure (repeatable)")
    parser.add_argument("--mdm-devices", type=int, default=2000, help="devices in the MDM export (10000: 1M rows)")
    args = parser.parse_args()
    chosen = args.only or SECTIONS
    print(f"floor interpreter: {sys.executable}; {time.strftime('%Y-%m-%d %H:%M %Z')}")
    with tempfile.TemporaryDirectory(prefix="appban-figures-") as folder:
        work = Path(folder)
        for name in chosen:
            if name == "dpkg" and not shutil.which("dpkg-query"):
                print("dpkg: dpkg-query is not installed, skipped")
                continue
            section = globals()[name]
            if name == "banlist":
                section(args.rounds)
            elif name == "mdm":
                section(args.rounds, work, args.mdm_devices)
            else:
                section(args.rounds, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
