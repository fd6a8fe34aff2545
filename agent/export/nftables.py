"""nftables: a table whose sets hold the addresses of banned services' names, and rules that
refuse connections to them (this host's own, and forwarded ones on a gateway).

Firewall sets hold addresses, not names, and a service's addresses change: the sets start empty
and dnsmasq fills them as it resolves the names (`--to dnsmasq-nftset`, dnsmasq's `nftset=`),
each address expiring a day after its last answer; no address is ever resolved at export time.
Load with `nft -f FILE`; deputies-style groups with nothing in scope get the table without rules.
"""

from __future__ import annotations

from agent.export.common import Export, Selection, commented, header_lines
from agent.export.dns import blocked_names

KIND = "nftables"
FAMILY, TABLE, SET4, SET6 = "inet", "appban", "banned4", "banned6"
TIMEOUT = "1d"


def render(selection: Selection) -> Export:
    """Given a Selection, return the nftables script (`nft -c -f FILE` checks it)."""
    rules = ""
    if blocked_names(selection):
        rules = "".join(f"        {match} counter reject\n" for match in (f"ip daddr @{SET4}", f"ip6 daddr @{SET6}"))
    chains = "".join(
        f"    chain {hook} {{\n        type filter hook {hook} priority filter; policy accept;\n{rules}    }}\n"
        for hook in ("output", "forward"))
    table = (f"table {FAMILY} {TABLE} {{\n"
             f"    set {SET4} {{ type ipv4_addr; flags timeout; timeout {TIMEOUT}; }}\n"
             f"    set {SET6} {{ type ipv6_addr; flags timeout; timeout {TIMEOUT}; }}\n{chains}}}\n")
    return Export(commented(header_lines(selection, KIND), "#") + table)
