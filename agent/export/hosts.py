"""A hosts file (`0.0.0.0 name` and `:: name`): the one blocking every resolver library honours.

A hosts file names single hosts only, so a `*.` item blocks the name itself and the note says
that the names below it are not blocked (use a resolver export for those)."""

from __future__ import annotations

from agent.export.common import Export, Selection, commented, header_lines
from agent.export.dns import blocked_names, no_domains_note

KIND = "hosts"


def block_lines(selection: Selection) -> list[str]:
    """Return the hosts lines alone (the on-device blocker puts them inside its managed block)."""
    lines = []
    for blocked in blocked_names(selection):
        lines += [f"0.0.0.0 {blocked.name}", f":: {blocked.name}"]
    return lines


def subtree_note(selection: Selection) -> tuple[str, ...]:
    """A note naming the `*.` items whose subnames a hosts file cannot block."""
    wide = [b.name for b in blocked_names(selection) if b.subtree]
    return (f"names below {len(wide)} domain(s) (a hosts file has no wildcards): "
            + ", ".join(wide[:5]) + (", ..." if len(wide) > 5 else ""),) if wide else ()


def render(selection: Selection) -> Export:
    """Given a Selection, return the hosts file text."""
    notes = subtree_note(selection) + no_domains_note(selection)
    body = "".join(line + "\n" for line in block_lines(selection))
    return Export(commented(header_lines(selection, KIND, notes), "#") + body, notes)
