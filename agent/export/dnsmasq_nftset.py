"""dnsmasq feeding the nftables table (`--to nftables`): `nftset=/name/4#inet#appban#banned4,...`
adds every address dnsmasq answers for the name (and the names below it) to the table's sets, so
connections to them are refused while the names still resolve. Use it where NXDOMAIN is not
wanted, or together with `--to dnsmasq` for the names an app reaches by cached addresses."""

from __future__ import annotations

from agent.export.common import Export, Selection, commented, header_lines
from agent.export.dns import blocked_names, no_domains_note
from agent.export.dnsmasq import exact_note
from agent.export.nftables import FAMILY, SET4, SET6, TABLE

KIND = "dnsmasq-nftset"


def render(selection: Selection) -> Export:
    """Given a Selection, return a dnsmasq conf-file of `nftset=` lines."""
    notes = exact_note(selection, "dnsmasq") + no_domains_note(selection)
    sets = f"4#{FAMILY}#{TABLE}#{SET4},6#{FAMILY}#{TABLE}#{SET6}"
    body = "".join(f"nftset=/{b.name}/{sets}\n" for b in blocked_names(selection))
    return Export(commented(header_lines(selection, KIND, notes), "#") + body, notes)
