"""What every collector shares: the context it runs in and the shape of what it returns.

A collector is a small class (as Ansible's package_facts has one per package manager) that says
whether it can run here and lists what is installed; it does I/O and nothing else, returning
plain records for the pure matcher.
"""

from __future__ import annotations

import stat
from dataclasses import field
from pathlib import Path

from agent.config import Config
from agent.inventory.reading import DATABASE_LIMIT, exists, folder_entries, read_bytes
from agent.model import LOCAL_DEVICE, App, CollectorError, Device
from agent.records import dataclass
from agent.runner import Runner

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Callable, Protocol
else:
    Protocol = object  # Collector is a protocol for type checkers; nothing checks one at run time


@dataclass(frozen=True)
class Context:
    """Where and how collectors read: `root` is "/" for the running system, or a mounted image."""

    root: Path = Path("/")
    live: bool = True
    runner: Runner = field(default_factory=Runner)
    config: Config = field(default_factory=Config)
    device: str = LOCAL_DEVICE
    """The id of the host's Device, for a collector to build its records on at once: `collect`
    gives it, and copies onto it each record a collector left on LOCAL_DEVICE (0.06 s of copies
    at 100,000 packages)."""

    def path(self, absolute: str) -> Path:
        """Return the path of an absolute system path inside `root`."""
        return self.root / absolute.lstrip("/")


class Collected:
    """A collector's result: apps, the devices they are on when not the local host (gateways),
    errors about single devices or files that did not stop the rest, and blind spots to report.

    A plain class that does what `@dataclass` would (the same arguments, equality and repr):
    the standard decorator compiles those three methods when the module is imported, on every
    check's start-up, for a record made once per collector."""

    def __init__(self, apps: list[App] | None = None, devices: list[Device] | None = None,
                 errors: list[CollectorError] | None = None, notes: list[str] | None = None) -> None:
        self.apps: list[App] = [] if apps is None else apps
        self.devices: list[Device] = [] if devices is None else devices
        self.errors: list[CollectorError] = [] if errors is None else errors
        self.notes: list[str] = [] if notes is None else notes

    def _fields(self) -> tuple[list[App], list[Device], list[CollectorError], list[str]]:
        return self.apps, self.devices, self.errors, self.notes

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was

    def __repr__(self) -> str:
        return (f"{type(self).__qualname__}(apps={self.apps!r}, devices={self.devices!r}, "
                f"errors={self.errors!r}, notes={self.notes!r})")


class Collector(Protocol):
    """The protocol every inventory backend implements."""

    name: str
    live_only: bool
    """True for collectors of live state (processes), which make no sense on a mounted image."""

    def unavailable(self, ctx: Context) -> str | None:
        """Return why this collector cannot run here, or None when it can."""

    def collect(self, ctx: Context) -> Collected:
        """Return what is installed; raise on a failure that leaves nothing usable."""


def home_dirs(ctx: Context) -> list[tuple[str, Path]]:
    """Return (user, home) for every home folder under the root: /home/* and /root.

    Why from the folder tree rather than the password database: on a mounted image the users'
    names are known by their folders, and per-user installs must be found for users who are not
    logged on.
    """
    base = ctx.path("/home")
    try:
        entries = folder_entries(base, root=ctx.root)
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    homes = [(name, base / name) for name, info in entries if stat.S_ISDIR(info.st_mode)]
    if exists(ctx.path("/root"), root=ctx.root, folder=True):
        homes.append(("root", ctx.path("/root")))
    return homes


def read_text_database(collector: str, path: Path, parse: Callable[[str], list[App]], root: Path = Path("/")) -> Collected:
    """Given a text database its tool always ends with a newline (apk's installed), return what
    `read_database` returns, `parse` given the text decoded as UTF-8 (bad bytes replaced)."""
    return read_database(collector, path, lambda data: parse(data.decode("utf-8", errors="replace")), root)


def read_database(collector: str, path: Path, parse: Callable[[bytes], list[App]], root: Path = Path("/")) -> Collected:
    """Given a text database its tool always ends with a newline (dpkg's status, apk's
    installed), return the Apps `parse` finds in its bytes, plus one error when the file ends in
    the middle of a record (cut short while written or copied; the last record may be incomplete).

    Raise OSError if the file cannot be read (it is read inside `root`, agent.inventory.reading).
    """
    data = read_bytes(path, DATABASE_LIMIT, root=root)
    result = Collected(apps=parse(data))
    if data and not data.endswith(b"\n"):
        result.errors.append(CollectorError(collector, f"{path}: ends in the middle of a record (truncated?)"))
    return result


def record_error(collector: str, what: object, exc: BaseException) -> CollectorError:
    """Given the record a collector could not read (a file, a key) and why, return its one error.

    Why one helper for every per-record failure, whatever its type: a planted file can raise
    errors no parser documents (an Info.plist declaring encoding "UTF-9" raises LookupError), and
    one bad record must cost that record, never the collector's other records.
    """
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
    return CollectorError(collector, " ".join(f"{what}: {detail}".split()))
