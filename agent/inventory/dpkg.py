"""Installed Debian packages, read from dpkg's status database (no dpkg process needed).

Reading `/var/lib/dpkg/status` directly works on a mounted image, needs no dpkg process, and gives
the same answer as `dpkg-query`, in less time than `dpkg-query -W` takes to list the packages: on
this project's benchmark (benchmarks/figures.py, synthetic databases of 10,000 and 100,000
packages) 0.71-0.77x in CPU time, every round under 0.8x (2026-12-02, load average 0.6-1.4); on a
machine's usual ~1,000 packages dpkg-query's process start dominates. Where the time goes (100,000
packages): one regex pass over the file that reads each record's first lines and finds any stray
field line (a third), building the Apps (half), reading the file (a tenth); cyclic GC is paused
(agent/gcpause.py).

How: the file is read as bytes; a record laid out as dpkg writes it (fields in dpkg's order) is
read by one match from its `Package:` line to its `Version:` line, so a record's description and
file lists cost a failed try per line, and the same pass finding no other line of a field read
proves nothing was missed; a slice of the file where that fails (a file written by hand, fields
out of order or twice) is read line by line, with the same result. Apps are built a slice at a
time by columns (`_Records`).

A package counts when its status's third word is `installed` (half-installed, half-configured,
unpacked, triggers-pending, config-files and not-installed are not installed apps — the same rule
as `dpkg-query -W -f '${db:Status-Status}'`).

File lists stay on disk (`info/<package>[:<arch>].list`) and are read on demand, per package, by
`package_files` (blocking needs the executables of one banned package, never all of them).
"""

from __future__ import annotations

import os
import re
from itertools import compress

from agent.inventory.base import Collected, Context, read_database
from agent.gcpause import paused_gc
from agent.inventory.reading import DATABASE_LIMIT, exists, read_text
from agent.model import LOCAL_DEVICE, App, build_records

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Iterable, Iterator

STATUS_FILE = "/var/lib/dpkg/status"
INFO_DIR = "/var/lib/dpkg/info"
WANTED = (b"Package", b"Essential", b"Status", b"Priority", b"Maintainer", b"Architecture", b"Multi-Arch", b"Version")
"""The fields read, in the order dpkg writes them, which is the order of a Row."""
Row = tuple[bytes, ...]
"""One record's values of the WANTED fields, in that order; b"" for a field it does not have."""
Columns = list[tuple[bytes, ...]]
"""The Rows of a slice turned into one tuple per WANTED field (its value in each record)."""
Marks = tuple[str, tuple[tuple[str, str], ...]]
"""What a record's architecture, Essential, Multi-Arch and Priority make of it: the `:arch`
suffix of its alias ("" for none) and its extra pairs."""

_FIELD = rb"\n(" + rb"|".join(WANTED) + rb"):[ \t]*([^\n]*)"
"""Any field read, as (key, value), at the start of a line (continuation lines start with a space
and are never matched): the reading that holds for any file. Compiled by `re` on first use: dpkg's
own databases never need it (~1.2 M instructions of a check)."""
_DPKG_ORDER = (b"Essential", b"Protected", b"Status", b"Priority", b"Section", b"Installed-Size", b"Origin",
               b"Maintainer", b"Bugs", b"Architecture", b"Multi-Arch", b"Source", b"Version")
"""The fields dpkg writes after `Package:` and up to `Version:`, in the order it writes them
(lib/dpkg/parse.c, `fieldinfos`); those it writes after Version are none of the WANTED."""
_HEADER = re.compile(rb"\n(?:Package:[ \t]*([^\n]*)" + b"".join(
    rb"(?:\n" + key + (rb":[ \t]*([^\n]*))?+" if key in WANTED else rb":[^\n]*)?+") for key in _DPKG_ORDER)
    + rb"|(" + rb"|".join(WANTED[1:]) + rb"):)")
"""A record's lines from `Package:` to `Version:` as dpkg writes them, each line optional but
Package, the WANTED values captured: one Row per match; or else a stray line, one that starts with
a WANTED field outside such a run of lines, its key captured in a ninth group (b"" in a Row).
Why: the regex engine's cost is per place it tries a match, and this pattern matches only at line
starts (found as a string search finds a newline), taking a record's first lines at once where
`_FIELD` takes each line, so a record's Depends, Conffiles and Description cost a failed try per
line and no tuple. Possessive (`?+`): a line taken is never given back, which nothing here
needs, and the engine then keeps no state to backtrack to (40 % fewer instructions). Finding the
stray lines in the same pass is what proves no WANTED line was missed: counting each field's
lines apart took seven more passes over the slice, a third of the parse."""


def parse_status(data: bytes | str, device: str = LOCAL_DEVICE) -> list[App]:
    """Given a dpkg status file, return one App per installed package (per architecture).

    A `Multi-Arch: same` package installed for two architectures gives two Apps; every package with
    an architecture other than `all` also answers to `name:arch`, dpkg's own spelling. Each record
    starts with its `Package:` field (dpkg writes it first), so the fields seen since the last
    `Package:` belong to it (the last value of a repeated field counts). The file is read a slice
    at a time, each cut just before a `Package:` line: the rows of all 100,000 records of a large
    file at once would take more memory than the Apps themselves. Values are read as UTF-8 with
    bad bytes replaced, as decoding the whole file would (each starts and ends at an ASCII byte,
    which UTF-8 never makes part of another character). Text is read as its UTF-8. The Apps are
    on `device`.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    records = _Records(device)
    with paused_gc():  # 100,000 records, no cycles: a third of the parse went to GC passes
        for buffer, start, end in _slices(data):
            records.add(_columns(buffer, start, end))
    return records.apps


SLICE = 256 * 1024
"""Bytes of the status file read at once (a few hundred records)."""


def _slices(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Yield (buffer, start, end) that cover `data`, each end just before a `\nPackage:` (or the
    end of the data), so no record is cut in two. The first is a copy of its bytes after a
    newline, so that the file's first line starts a line as the patterns read lines; the others
    are `data` itself (a copy of the whole file for that one newline cost 5 % of the parse)."""
    end = _cut(data, SLICE)
    yield b"\n" + data[:end], 0, end + 1
    while end < len(data):
        start, end = end, _cut(data, end + SLICE)
        yield data, start, end


def _cut(data: bytes, at: int) -> int:
    """Return where the first `\nPackage:` at or after `at` starts, or the end of `data`."""
    end = data.find(b"\nPackage:", at)
    return len(data) if end < 0 else end


def _columns(data: bytes, start: int, end: int) -> Columns:
    """Return the Columns of the records in data[start:end], which starts at a `\nPackage:` line
    or at the start of the file ([] when it has no record).

    Read as dpkg writes records (`_HEADER`) when that reading saw every WANTED line: when it found
    no stray one. A record whose fields come in another order, twice, or after a field dpkg does
    not write there, leaves one of its lines outside a record's match, and the slice is read line
    by line (`_FIELD`) instead: same Rows, a little slower."""
    columns = list(zip(*_HEADER.findall(data, start, end)))
    if columns and not any(columns.pop()):  # the last column holds the stray lines' keys
        return columns
    return list(zip(*_field_rows(data, start, end)))


def _field_rows(data: bytes, start: int, end: int) -> list[Row]:
    """Return the Rows of data[start:end] read line by line, for any order of fields (what comes
    before the first `Package:` belongs to no record and is dropped)."""
    rows: list[Row] = []
    record: dict[bytes, bytes] = {}
    for key, value in re.compile(_FIELD).findall(data, start, end):
        if key == b"Package":
            if b"Package" in record:
                rows.append(tuple(record.get(name, b"") for name in WANTED))
            record = {}
        record[key] = value
    if b"Package" in record:
        rows.append(tuple(record.get(name, b"") for name in WANTED))
    return rows


class _Records:
    """The Apps of one status file, built a slice's Columns at a time.

    Why by columns: Python's cost is per step it takes per package, so each column (names,
    versions, ...) is decoded, filtered and combined by C loops (`bytes.join`, `map`, `compress`);
    what a database has only a handful of (Status lines; combinations of architecture, Essential,
    Multi-Arch and Priority) is judged once per distinct value, in two tables kept across slices,
    and the records that share one share its answer, the same tuple of extra pairs included.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.apps: list[App] = []
        self._installed: dict[bytes, bool] = {}
        self._marks: dict[tuple[bytes, ...], Marks] = {}

    def add(self, columns: Columns) -> None:
        """Append the Apps of the records whose status's third word is `installed`."""
        if not columns:
            return
        package, essential, status, priority, maintainer, arch, multi_arch, version = columns
        for value in set(status).difference(self._installed):
            self._installed[value] = _installed(_text(value))
        kept = list(map(self._installed.__getitem__, status))
        if not any(kept):
            return
        marks = list(compress(zip(arch, essential, multi_arch, priority), kept))
        for key in set(marks).difference(self._marks):
            self._marks[key] = _marks(*key)
        device = self.device
        self.apps += build_records(App, [
            {"source": "dpkg", "id": name, "name": name, "version": number, "publisher": publisher, "path": "",
             "user": "", "device": device, "aliases": (name + suffix,) if suffix else (), "sha256": "",
             "extra": extra}
            for name, number, publisher, (suffix, extra) in zip(
                _texts(compress(package, kept)), _texts(compress(version, kept)),
                _texts(compress(maintainer, kept)), map(self._marks.__getitem__, marks))])


def _installed(status: str) -> bool:
    """Whether a Status value's third (and last) word is `installed` (half-installed,
    half-configured, unpacked, triggers-pending, config-files and not-installed are not installed
    apps: the same rule as `dpkg-query -W -f '${db:Status-Status}'`)."""
    return status.endswith(" installed") and len(status.split()) == 3


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace").rstrip()


def _texts(values: Iterable[bytes]) -> list[str]:
    """`_text` of each of (at least one) values, decoded as one: no value holds a newline."""
    return list(map(str.rstrip, b"\n".join(values).decode("utf-8", "replace").split("\n")))


def _marks(arch: bytes, essential: bytes, multi_arch: bytes, priority: bytes) -> Marks:
    """Return the alias suffix and extra pairs of a record: the architecture and Multi-Arch, and
    the marks that put a package beyond blocking (Essential: yes, Priority: required), so
    enforcement can refuse without reading the database again; appended in name order, so the
    pairs come sorted as every collector's do."""
    name = _text(arch)
    extra = [("arch", name)] if name else []
    if _text(essential).strip().lower() == "yes":
        extra.append(("essential", "yes"))
    if _text(multi_arch):
        extra.append(("multi_arch", _text(multi_arch)))
    if _text(priority).strip().lower() == "required":
        extra.append(("priority", "required"))
    return (f":{name}" if name and name != "all" else ""), tuple(extra)


class DpkgCollector:
    """Debian/Ubuntu packages from the status database under the context's root."""

    name = "dpkg"
    live_only = False

    def unavailable(self, ctx: Context) -> str | None:
        return None if exists(ctx.path(STATUS_FILE), root=ctx.root) else f"no dpkg database at {ctx.path(STATUS_FILE)}"

    def collect(self, ctx: Context) -> Collected:
        return read_database(self.name, ctx.path(STATUS_FILE), lambda data: parse_status(data, ctx.device), ctx.root)


def package_files(root: str, package: str, arch: str = "") -> list[str]:
    """Return the paths a package installed (from dpkg's `info/<pkg>[:arch].list`), so blocking
    knows which executables belong to a banned package. Missing list → empty."""
    info = f"{root.rstrip('/')}/var/lib/dpkg/info"
    for name in ((f"{package}:{arch}", package) if arch else (package,)):
        try:
            return [line for line in read_text(f"{info}/{name}.list", DATABASE_LIMIT, root=root or "/").split("\n") if line.strip()]
        except FileNotFoundError:
            continue
    return []


def app_files(ctx: Context, app: App) -> list[str]:
    """Given a dpkg App, return the paths its package installed (see `package_files`)."""
    return package_files(str(ctx.root), app.id, app.extra_value("arch"))


def path_owners(ctx: Context, paths: Iterable[str]) -> dict[str, str]:
    """Given absolute paths on the device, return {path: package} for those a package installed.

    Why scan the lists rather than ask per path: dpkg keeps no reverse index, and one pass over
    `info/*.list` answers any number of paths (as `dpkg -S` does internally). The lists likeliest
    to hold the paths not yet placed are read first (`_reading_order`), and the scan stops once
    every path is placed: a file belongs to one package, so the order changes nothing but how
    many of the ~1,000 lists are read (a handful, for a machine's launchers, where reading the
    lists of every package named like any of them took ~70). A path that several lists name
    (a diverted file is in the lists of the package and of its diverter) goes to the first read.
    """
    wanted = set(paths)
    found: dict[str, str] = {}
    info = ctx.path(INFO_DIR)
    if not wanted or not info.is_dir():
        return found
    for name in _reading_order(os.listdir(info), wanted, found):
        try:
            lines = read_text(os.path.join(info, name), DATABASE_LIMIT, root=ctx.root).splitlines()
        except OSError:
            continue
        package = name[:-5].partition(":")[0]
        for line in wanted.intersection(lines):
            found.setdefault(line, package)
        if len(found) == len(wanted):
            break
    return found


def _reading_order(names: list[str], wanted: set[str], found: dict[str, str]) -> Iterator[str]:
    """Yield each `info/*.list` name among `names` (the folder's listing) once: first, one at a
    time, the likeliest list for the paths of `wanted` not yet in `found` (which the caller
    fills between yields), then the rest in the folder's order.

    The likeliest is the package named as a file (`vim` for vim.desktop, `python3.11` for
    python3.11.desktop), then one named that plus `-…` (`vim-common`), then one whose name and a
    file's contain each other. Asking again after each list lets a path placed stop drawing its
    namesakes (the dozens of `python3-…` lists once python3.11.desktop is placed). The likely
    lists are ranked again only when a path was placed: until then the next likeliest is the
    next in the same (stable) order, as picking the least again would give it.

    Why the close namesakes first (`_close_namesakes`: ranks 0 and 1, found by a prefix search):
    while one is left for a path not yet placed, no other list can come before it, and they
    usually place every launcher (python3.11, chromium, vim-common here), so the lists that
    merely contain a file's name or are contained in it (`_named_like`, a step per list: ~6 M
    instructions here) are looked for only when those are not enough.
    """
    stems = {path: _stems(path) for path in wanted}
    every_stem = set().union(*stems.values())
    close = _close_namesakes(names, every_stem)
    whole = close is None
    likely = {name: _ranks(package, every_stem) for name, package in (_named_like(names, every_stem) if whole else close)}
    taken = set()
    while likely or not whole:
        placed = len(found)
        unplaced = set().union(*(stems[path] for path in wanted if path not in found))

        def rank(name: str) -> int:
            return min((rank for stem, rank in likely[name].items() if stem in unplaced), default=_UNLIKELY)

        ordered = sorted(likely, key=rank)
        if not whole and (not ordered or rank(ordered[0]) > 1):  # no close namesake left for an unplaced path
            likely = {name: _ranks(package, every_stem) for name, package in _named_like(names, every_stem)
                      if name not in taken}
            whole = True
            continue
        for best in ordered:
            if not whole and rank(best) > 1:
                break
            del likely[best]
            taken.add(best)
            yield best
            if len(found) != placed:
                break
    yield from (name for name in names if name.endswith(".list") and name not in taken)


def _stems(path: str) -> set[str]:
    """Return the names a package named for the file at `path` may have: `python3.11` and `python3`
    for python3.11.desktop."""
    base = os.path.basename(path).casefold()
    return {os.path.splitext(base)[0], base.partition(".")[0]} - {""}


_UNLIKELY = 3
"""The rank of a list none of the unplaced files is named like."""


def _close_namesakes(names: list[str], stems: set[str]) -> list[tuple[str, str]] | None:
    """Return (list, package) of the `info/*.list` files among `names` whose package is named as
    a stem or as it plus `-…` (ranks 0 and 1), in the folder's order; None where the names cannot
    be searched as one text (one holds a newline, or is not ASCII: never dpkg's own names).

    How, without a step per name: such a list's line in the listing, lowercased, starts with the
    stem followed by `.list`, `:` (a Multi-Arch list's `:arch`) or `-`; those lines are found by
    str.find, and each that is a list is then judged exactly, as `_ranks` judges it.
    """
    text = "\n" + "\n".join(names) + "\n"
    if text.count("\n") != len(names) + 1 or not text.isascii():
        return None
    folded = text.lower()  # as casefold, for ASCII, and the same length: the lines stay where they are
    close: dict[int, tuple[str, str]] = {}
    for stem in stems:
        for at in (at for needle in (f"\n{stem}.list\n", f"\n{stem}:", f"\n{stem}-") for at in _occurrences(folded, needle)):
            start, end = at + 1, text.index("\n", at + 1)
            if text.endswith(".list", start, end):
                package = text[start:end - 5].partition(":")[0].casefold()
                if package == stem or package.startswith(f"{stem}-"):
                    close[start] = (text[start:end], package)
    return [close[start] for start in sorted(close)]


def _occurrences(text: str, needle: str) -> Iterator[int]:
    """Yield where each occurrence of `needle` in `text` starts."""
    at = text.find(needle)
    while at >= 0:
        yield at
        at = text.find(needle, at + 1)


def _named_like(names: list[str], stems: set[str]) -> Iterator[tuple[str, str]]:
    """Yield (list, package) of the `info/*.list` files among `names` (the folder's listing)
    whose package's name and a stem contain each other, in the folder's order.

    Why this way: it runs over a folder of ~3,500 names (967 lists here) on every full check,
    where each Python step per name counts (it was 9.4 M instructions, 6 M of them testing each
    stem against each package). The lists are cut out of the names joined in one text (split
    at `.list` and a newline: no per-name `endswith`), and the stems are one pattern (searched
    in C), so a list costs a few string calls. A folder where a name holds a newline (never
    dpkg's: no package name does) cannot be cut so, and is read in its own order.
    """
    text = "\n".join(names) + "\n"
    if text.count("\n") != len(names):
        return
    joined = "/".join(stems)  # no package name holds a "/": `package in joined` is "in one of the stems"
    held = re.compile("|".join(map(re.escape, sorted(stems)))).search  # a stem in the package
    for piece in text.split(".list\n")[:-1]:
        name = piece.rpartition("\n")[2]
        package = name.partition(":")[0].casefold()
        if package in joined or held(package):
            yield f"{name}.list", package


def _ranks(package: str, stems: set[str]) -> dict[str, int]:
    """Return {stem: rank} of each file stem the package is named like: 0 named as it, 1 named it
    plus `-…`, 2 the two names contain each other."""
    ranks: dict[str, int] = {}
    for stem in stems:
        if package == stem:
            ranks[stem] = 0
        elif package.startswith(f"{stem}-"):
            ranks[stem] = 1
        elif stem in package or package in stem:
            ranks[stem] = 2
    return ranks
