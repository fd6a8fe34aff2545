"""Installed Debian packages, read from dpkg's status database (no dpkg process needed).

Reading `/var/lib/dpkg/status` directly works on a mounted image, needs no dpkg process, and gives
the same answer as `dpkg-query`. It is not faster than dpkg-query at every size: on this project's
benchmark (benchmarks/figures.py, CPU time) it is about as fast on a machine's usual ~1,000
packages, where dpkg-query's process start dominates, and about 1.4x slower at 10,000-100,000,
where Python's own work per package is the bound: the one regex pass over the file and building
one record per package take about half each (reading the file is a tenth; cyclic GC, a third
before, is paused and kept off the records afterwards: agent/gcpause.py). Cutting the text at
`Package:` lines and `str.find`-ing each field measured no faster on the synthetic database and
slower on real ones, whose long descriptions and Conffiles lists the regex skips line by line.

A package counts when its status's third word is `installed` (half-installed, half-configured,
unpacked, triggers-pending, config-files and not-installed are not installed apps — the same rule
as `dpkg-query -W -f '${db:Status-Status}'`).

File lists stay on disk (`info/<package>[:<arch>].list`) and are read on demand, per package, by
`package_files` (blocking needs the executables of one banned package, never all of them).
"""

from __future__ import annotations

import os
import re
from typing import Iterable, Iterator

from agent.inventory.base import Collected, Context, read_text_database
from agent.gcpause import paused_gc
from agent.inventory.reading import DATABASE_LIMIT, read_text
from agent.model import LOCAL_DEVICE, App, build_record

STATUS_FILE = "/var/lib/dpkg/status"
INFO_DIR = "/var/lib/dpkg/info"
_FIELD = re.compile(r"\n(Package|Status|Version|Architecture|Maintainer|Multi-Arch|Essential|Priority):[ \t]*([^\n]*)")
"""The fields read, as (key, value) at the start of a line; continuation lines start with a space
and are never matched. One pass over the whole file: at 100,000 packages, splitting it into
stanzas first costs more than dpkg-query takes to list them."""


def parse_status(text: str) -> list[App]:
    """Given the text of a dpkg status file, return one App per installed package (per architecture).

    A `Multi-Arch: same` package installed for two architectures gives two Apps; every package with
    an architecture other than `all` also answers to `name:arch`, dpkg's own spelling. Each record
    starts with its `Package:` field (dpkg writes it first), so the fields seen since the last
    `Package:` belong to it. The text is matched a slice at a time, each cut just before a
    `Package:` line: all 800,000 (field, value) pairs of a 100,000-package file at once took a
    quarter more memory than the records themselves.
    """
    apps: list[App] = []
    record: dict[str, str] = {}
    text = "\n" + text
    with paused_gc():  # 100,000 records, no cycles: a third of the parse went to GC passes
        for start, end in _slices(text):
            for key, value in _FIELD.findall(text, start, end):
                if key == "Package" and record:
                    _add(apps, record)
                    record = {}
                record[key] = value
        if record:
            _add(apps, record)
    return apps


SLICE = 256 * 1024
"""Characters of the status file matched at once (a few hundred records)."""


def _slices(text: str) -> Iterator[tuple[int, int]]:
    """Yield (start, end) offsets that cover `text`, each end just before a `\nPackage:` (or the
    end of the text), so no record's field is cut in two."""
    start = 0
    while start < len(text):
        end = text.find("\nPackage:", start + SLICE)
        end = len(text) if end < 0 else end
        yield start, end
        start = end


def _add(apps: list[App], fields: dict[str, str]) -> None:
    """Append the App of one record if its status's third word is `installed`."""
    status = fields.get("Status", "")
    if not status.rstrip().endswith(" installed") or len(status.split()) != 3 or "Package" not in fields:
        return
    get = fields.get
    name, arch = fields["Package"].rstrip(), get("Architecture", "").rstrip()
    apps.append(build_record(App, {  # every field given: no defaults merged, no frozen __init__
        "source": "dpkg", "id": name, "name": name, "version": get("Version", "").rstrip(),
        "publisher": get("Maintainer", "").rstrip(), "path": "", "user": "", "device": LOCAL_DEVICE,
        "aliases": (f"{name}:{arch}",) if arch and arch != "all" else (), "sha256": "",
        "extra": _extra(arch, fields),
    }))


def _extra(arch: str, fields: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The architecture and Multi-Arch, and the marks that put a package beyond blocking
    (Essential: yes, Priority: required), so enforcement can refuse without reading the database
    again; appended in name order, so the pairs come sorted as every collector's do."""
    extra = [("arch", arch)] if arch else []
    if fields.get("Essential", "").strip().lower() == "yes":
        extra.append(("essential", "yes"))
    multi_arch = fields.get("Multi-Arch", "").rstrip()
    if multi_arch:
        extra.append(("multi_arch", multi_arch))
    if fields.get("Priority", "").strip().lower() == "required":
        extra.append(("priority", "required"))
    return tuple(extra)


class DpkgCollector:
    """Debian/Ubuntu packages from the status database under the context's root."""

    name = "dpkg"
    live_only = False

    def unavailable(self, ctx: Context) -> str | None:
        return None if ctx.path(STATUS_FILE).exists() else f"no dpkg database at {ctx.path(STATUS_FILE)}"

    def collect(self, ctx: Context) -> Collected:
        return read_text_database(self.name, ctx.path(STATUS_FILE), parse_status)


def package_files(root: str, package: str, arch: str = "") -> list[str]:
    """Return the paths a package installed (from dpkg's `info/<pkg>[:arch].list`), so blocking
    knows which executables belong to a banned package. Missing list → empty."""
    info = f"{root.rstrip('/')}/var/lib/dpkg/info"
    for name in ((f"{package}:{arch}", package) if arch else (package,)):
        try:
            return [line for line in read_text(f"{info}/{name}.list", DATABASE_LIMIT).split("\n") if line.strip()]
        except FileNotFoundError:
            continue
    return []


def app_files(ctx: Context, app: App) -> list[str]:
    """Given a dpkg App, return the paths its package installed (see `package_files`)."""
    return package_files(str(ctx.root), app.id, app.extra_value("arch"))


def path_owners(ctx: Context, paths: Iterable[str]) -> dict[str, str]:
    """Given absolute paths on the device, return {path: package} for those a package installed.

    Why scan the lists rather than ask per path: dpkg keeps no reverse index, and one pass over
    `info/*.list` answers any number of paths (as `dpkg -S` does internally). The lists of
    packages named like one of the files (`vim-common` for `vim.desktop`) are read first, and the
    scan stops once every path is placed: a file belongs to one package, so the order changes
    nothing but how many of the ~1,000 lists are read.
    """
    wanted = set(paths)
    found: dict[str, str] = {}
    info = ctx.path(INFO_DIR)
    if not wanted or not info.is_dir():
        return found
    stems = {os.path.basename(path).partition(".")[0].casefold() for path in wanted} - {""}
    lists = [entry for entry in os.scandir(info) if entry.name.endswith(".list")]
    lists.sort(key=lambda entry: not _named_like(entry.name[:-5].partition(":")[0], stems))
    for entry in lists:
        package = entry.name[:-5].partition(":")[0]
        try:
            lines = read_text(entry.path, DATABASE_LIMIT).splitlines()
        except OSError:
            continue
        for line in wanted.intersection(lines):
            found.setdefault(line, package)
        if len(found) == len(wanted):
            break
    return found


def _named_like(package: str, stems: set[str]) -> bool:
    """Whether a package's name and one of the files' names contain each other."""
    return any(stem in package or package in stem for stem in stems)
