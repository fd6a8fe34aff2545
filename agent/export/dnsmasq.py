"""dnsmasq: `address=/name/#` answers the name and every name below it with 0.0.0.0 and ::.

dnsmasq has no exact-only form, so an exact item blocks its subnames too (said in the notes)."""

from __future__ import annotations

from agent.export.common import Export, Selection, commented, header_lines
from agent.export.dns import blocked_names, no_domains_note

KIND = "dnsmasq"


def block_lines(selection: Selection) -> list[str]:
    """Return the `address=` lines alone (for the on-device drop-in)."""
    return [f"address=/{b.name}/#" for b in blocked_names(selection)]


def exact_note(selection: Selection, engine: str) -> tuple[str, ...]:
    """Resolvers whose blocks always cover subnames say which exact names became wider."""
    exact = [b.name for b in blocked_names(selection) if not b.subtree]
    return (f"exact-only matching ({engine} also blocks the names below: {', '.join(exact)})",) if exact else ()


def render(selection: Selection) -> Export:
    """Given a Selection, return a dnsmasq conf-file (for conf-dir or --conf-file)."""
    notes = exact_note(selection, KIND) + no_domains_note(selection)
    body = "".join(line + "\n" for line in block_lines(selection))
    return Export(commented(header_lines(selection, KIND, notes), "#") + body, notes)
