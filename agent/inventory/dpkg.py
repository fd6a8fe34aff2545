"""Installed Debian packages, read from dpkg's status database (no dpkg process needed).

Reading `/var/lib/dpkg/status` directly works on a mounted image, needs no dpkg process, and gives
the same answer as `dpkg-query`. It is not faster than dpkg-query at every size: on this project's
benchmark (benchmarks/figures.py) it is about as fast on a machine's usual ~1,000 packages, where
dpkg-query's process start dominates, and about 1.5x slower at 10,000-100,000, where building one
Python record per package is the bound (the regex pass and the records each take about half;
cyclic GC, a third before, is paused). A package counts when its status's third word is `installed`
(half-installed, half-configured, unpacked, triggers-pending, config-files and not-installed are
not installed apps — the same rule as `dpkg-query -W -f '${db:Status-Status}'`).

File lists stay on disk (`info/<package>[:<arch>].list`) and are read on demand, per package, by
`package_files` (blocking needs the executables of one banned package, never all of them).
"""

from __future__ import annotations

import os
from typing import Iterable

from agent.inventory.base import Collected, Context, read_text_database
from agent.gcpause import paused_gc
from agent.inventory.reading import DATABASE_LIMIT, read_text
from agent.model import LOCAL_DEVICE, App, build_record

STATUS_FILE = "/var/lib/dpkg/status"
INFO_DIR = "/var/lib/dpkg/info"
def parse_status(text: str) -> list[App]:
    """Given the text of a dpkg status file, return one App per installed package (per architecture).

    A `Multi-Arch: same` package installed for two architectures gives two Apps; every package with
    an architecture other than `all` also answers to `name:arch`, dpkg's own spelling. Each record
    starts with its `Package:` field (dpkg writes it first), so the text is cut at every line that
    starts with `Package:` and each piece is one record; what comes before the first is no record.

    Why cutting and `str.rfind` rather than a regular expression over the whole text: at 100,000
    packages the one-pass expression alone (it tried every line against eight field names) took
    half of what dpkg-query needs to list them; `rfind` jumps to the few fields read.
    """
    pieces = text.split("\nPackage:")
    if text.startswith("Package:"):
        pieces[0] = pieces[0][len("Package:"):]
    else:
        del pieces[0]
    with paused_gc():  # 100,000 records, no cycles: a third of the parse went to GC passes
        return [app for app in map(_app, pieces) if app is not None]


def _value(record: str, key: str) -> str:
    """Return the value of the field `key` ("\nName:", at the start of a line; continuation lines
    start with a space, so they never match) in one record, "" if it has none. A record that
    repeats a field gives its last value."""
    start = record.rfind(key)
    if start < 0:
        return ""
    start += len(key)
    end = record.find("\n", start)
    return (record[start:end] if end >= 0 else record[start:]).lstrip(" \t").rstrip()


def _app(record: str) -> App | None:
    """Return the App of one record (the text after its `Package:`) if its status's third word
    is `installed`. The fields every record has are read inline, not through `_value`: at 100,000
    records a call per field was a fifth of the parse."""
    find, rfind, size = record.find, record.rfind, len(record)
    at = rfind("\nStatus:")
    if at < 0:
        return None
    end = find("\n", at + 8)
    status = record[at + 8:end if end >= 0 else size]
    if not status.rstrip().endswith(" installed") or len(status.split()) != 3:
        return None
    end = find("\n")
    name = record[:end if end >= 0 else size].lstrip(" \t").rstrip()
    at = rfind("\nArchitecture:")
    if at >= 0:
        end = find("\n", at + 14)
        arch = record[at + 14:end if end >= 0 else size].lstrip(" \t").rstrip()
    else:
        arch = ""
    at = rfind("\nVersion:")
    if at >= 0:
        end = find("\n", at + 9)
        version = record[at + 9:end if end >= 0 else size].lstrip(" \t").rstrip()
    else:
        version = ""
    at = rfind("\nMaintainer:")
    if at >= 0:
        end = find("\n", at + 12)
        maintainer = record[at + 12:end if end >= 0 else size].lstrip(" \t").rstrip()
    else:
        maintainer = ""
    return build_record(App, {  # App(...) without the frozen __init__'s setattr per field
        "source": "dpkg", "id": name, "name": name, "version": version, "publisher": maintainer,
        "path": "", "user": "", "device": LOCAL_DEVICE,
        "aliases": (f"{name}:{arch}",) if arch and arch != "all" else (), "sha256": "",
        "extra": _extra(arch, record),
    })


def _extra(arch: str, record: str) -> tuple[tuple[str, str], ...]:
    """The architecture and Multi-Arch, and the marks that put a package beyond blocking
    (Essential: yes, Priority: required), so enforcement can refuse without reading the database
    again. Pairs sorted by name, as every collector's are. Most records have neither Essential
    nor Multi-Arch, so one `in` each skips them."""
    extra = [("arch", arch)] if arch else []
    if "\nEssential:" in record and _value(record, "\nEssential:").strip().lower() == "yes":
        extra.append(("essential", "yes"))
    if "\nMulti-Arch:" in record:
        multi_arch = _value(record, "\nMulti-Arch:")
        if multi_arch:
            extra.append(("multi_arch", multi_arch))
    if _value(record, "\nPriority:").strip().lower() == "required":
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
