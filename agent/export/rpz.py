"""A BIND response-policy zone, loadable as zone `appban.rpz` (BIND, Knot Resolver, PowerDNS
Recursor and unbound's rpz module read the same zone). `name CNAME .` answers NXDOMAIN for the
name; `*.name CNAME .` for the names below it. The SOA serial is the ban list's serial, so
secondaries pick up each new list."""

from __future__ import annotations

from agent.export.common import Export, Selection, commented, header_lines
from agent.export.dns import blocked_names, no_domains_note

KIND = "rpz"
TTL = 300
SERIAL_MODULO = 2 ** 32


def render(selection: Selection) -> Export:
    """Given a Selection, return the zone file text (`named-checkzone appban.rpz FILE` accepts it)."""
    notes = no_domains_note(selection)
    serial = selection.provenance.serial % SERIAL_MODULO
    lines = [  # names relative to the zone, so it loads under any zone name (appban.rpz by convention)
        f"$TTL {TTL}",
        f"@ IN SOA localhost. hostmaster.localhost. ({serial} 3600 600 86400 {TTL})",
        "@ IN NS localhost.",
    ]
    for blocked in blocked_names(selection):
        lines.append(f"{blocked.name} CNAME .")
        if blocked.subtree:
            lines.append(f"*.{blocked.name} CNAME .")
    return Export(commented(header_lines(selection, KIND, notes), ";") + "".join(f"{line}\n" for line in lines), notes)
