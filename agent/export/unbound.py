"""unbound: `local-zone: "name." always_nxdomain` in a `server:` clause (an include file for
unbound.conf or /etc/unbound/unbound.conf.d/). A local zone covers the names below it too."""

from __future__ import annotations

from agent.export.common import Export, Selection, commented, header_lines
from agent.export.dns import blocked_names, no_domains_note
from agent.export.dnsmasq import exact_note

KIND = "unbound"


def block_lines(selection: Selection) -> list[str]:
    """Return the `server:` clause with one local zone per name (for the on-device drop-in)."""
    return ["server:"] + [f'    local-zone: "{b.name}." always_nxdomain' for b in blocked_names(selection)]


def render(selection: Selection) -> Export:
    """Given a Selection, return the unbound include text."""
    notes = exact_note(selection, KIND) + no_domains_note(selection)
    body = "".join(line + "\n" for line in block_lines(selection))
    return Export(commented(header_lines(selection, KIND, notes), "#") + body, notes)
