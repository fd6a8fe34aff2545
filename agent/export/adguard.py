"""An AdGuard (Home, DNS) blocklist: `||name^` blocks a name and the names below it, `|name^` the
name only (the form AdGuard Home itself uses for exact hosts, AdguardTeam/AdGuardHome#3998).
Comments start with `!`."""

from __future__ import annotations

from agent.export.common import Export, Selection, commented, header_lines
from agent.export.dns import blocked_names, no_domains_note

KIND = "adguard"


def render(selection: Selection) -> Export:
    """Given a Selection, return the blocklist text."""
    notes = no_domains_note(selection)
    rules = [("||" if b.subtree else "|") + f"{b.name}^" for b in blocked_names(selection)]
    return Export(commented(header_lines(selection, KIND, notes), "!") + "".join(f"{r}\n" for r in rules), notes)
