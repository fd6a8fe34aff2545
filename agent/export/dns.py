"""The names the DNS exports block, shared by the hosts, dnsmasq, unbound, RPZ and AdGuard writers."""

from __future__ import annotations

from dataclasses import dataclass

from agent.domains import split_domain
from agent.export.common import Selection


@dataclass(frozen=True)
class BlockedName:
    """One DNS name to block; `subtree` when the names below it are blocked too."""

    name: str
    subtree: bool
    entry: str


def blocked_names(selection: Selection) -> list[BlockedName]:
    """Given a Selection, return each name once (a `*.` form wins over the same exact name),
    sorted, naming the first entry that lists it."""
    found: dict[str, BlockedName] = {}
    for entry in selection.entries:
        for item in entry.match.domains:
            name, subtree = split_domain(item)
            known = found.get(name)
            if known is None:
                found[name] = BlockedName(name, subtree, entry.id)
            elif subtree and not known.subtree:
                found[name] = BlockedName(name, True, known.entry)
    return [found[name] for name in sorted(found)]


def no_domains_note(selection: Selection) -> tuple[str, ...]:
    """A note when entries are in scope but none lists network names (a DNS export then blocks nothing)."""
    bare = [e.id for e in selection.entries if not e.match.domains]
    return (f"entries without domains: {', '.join(bare)}",) if bare else ()
