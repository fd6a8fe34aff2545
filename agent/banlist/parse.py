"""Parse and validate `appban.banlist/v1` documents (YAML or JSON): pure, no I/O.

The ban list decides what is reported and blocked on every device, so anything odd in it is
refused with one line naming the entry and field: unknown keys, wrong types, duplicate ids,
and (through `load_document`) duplicate keys, YAML aliases and oversized documents.
"""

from __future__ import annotations

from agent.clock import datetime, timedelta

from agent.errors import UserError
from agent.documents import DocumentError, load_document
from agent.gcpause import paused_gc
from agent.model import BanList, aware
from agent.schema import SchemaError, build

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Any

FORMAT = "appban.banlist/v1"


class BanListError(UserError):
    """A ban list that cannot be used; the message is one line that says what and where."""


def parse_banlist(data: bytes, what: str = "ban list") -> BanList:
    """Given the exact bytes of a ban list, return the validated BanList.

    Raise BanListError whose one-line message names `what`, the entry and the field at fault.
    """
    with paused_gc():
        return _parse(data, what)


def _parse(data: bytes, what: str) -> BanList:
    try:
        raw = load_document(data, what)
    except DocumentError as exc:
        raise BanListError(str(exc)) from None
    if not isinstance(raw, dict):
        raise BanListError(f"{what}: expected a mapping at the top level")
    if raw.get("format") != FORMAT:
        raise BanListError(f"{what}: field 'format' must be {FORMAT!r}, got {raw.get('format')!r}")
    try:
        banlist = build(BanList, raw)
    except SchemaError as exc:
        raise BanListError(f"{what}: {_locate(raw, exc)}") from None
    _check_references(banlist, what)
    return banlist


def _locate(raw: dict[str, Any], exc: SchemaError) -> str:
    """Name the entry by its id (people search for ids, not list positions)."""
    path = exc.path
    if len(path) >= 2 and path[0] in ("entries", "exceptions") and isinstance(path[1], int):
        kind = "entry" if path[0] == "entries" else "exception"
        item = raw[path[0]][path[1]]
        label = item.get("id" if kind == "entry" else "entry") if isinstance(item, dict) else None
        where = f"{kind} {label!r} (#{path[1] + 1})" if isinstance(label, str) else f"{kind} #{path[1] + 1}"
        rest = ".".join(str(p) for p in path[2:])
        return f"{where} field {rest!r}: {exc.problem}" if rest else f"{where}: {exc.problem}"
    return f"field {'.'.join(str(p) for p in path)!r}: {exc.problem}"


def _check_references(banlist: BanList, what: str) -> None:
    seen: set[str] = set()
    for entry in banlist.entries:
        if entry.id in seen:
            raise BanListError(f"{what}: entry {entry.id!r}: duplicate id")
        seen.add(entry.id)
    for number, exc in enumerate(banlist.exceptions, 1):
        if exc.entry not in seen:
            raise BanListError(f"{what}: exception #{number} field 'entry': no entry {exc.entry!r}")
        if not exc.devices and not exc.users:
            raise BanListError(
                f"{what}: exception #{number} for {exc.entry!r}: names no devices or users "
                "(blanket exceptions are not allowed)"
            )


CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future a list's `issued` may lie: clocks of publisher and device differ a little."""


def check_issued(banlist: BanList, now: datetime, what: str) -> None:
    """Refuse a list issued in the future (beyond CLOCK_SKEW): it was made by a clock that is
    wrong, or made to outrank lists not yet written. Raise BanListError naming `what`."""
    if aware(banlist.issued) > aware(now) + CLOCK_SKEW:
        raise BanListError(f"{what}: issued {aware(banlist.issued).isoformat()}, in the future "
                           f"(more than {int(CLOCK_SKEW.total_seconds() // 60)} minutes ahead of this device's clock)")
