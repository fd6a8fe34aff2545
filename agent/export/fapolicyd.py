"""fapolicyd: deny rules by sha256 (the list holds no paths; a guard on a device adds the paths
of the banned packages it finds). Written by the exec guard's own rules writer, so an exported
file and the one the guard installs cannot drift apart; user exceptions become allow rules
placed before the deny."""

from __future__ import annotations

from agent.enforce.deny import deny_set
from agent.enforce.fapolicyd import check_rules, render_rules
from agent.export.common import Export, Selection, commented, header_lines

KIND = "fapolicyd"


def render(selection: Selection) -> Export:
    """Given a Selection, return a rules.d file (e.g. /etc/fapolicyd/rules.d/15-appban.rules).

    Raise RulesError if the text would not be a valid rules file (a bug, never bad input)."""
    deny = deny_set(selection.entries, {})
    _, skipped = render_rules(deny, allow_users=selection.allowed_users)
    no_hash = [e.id for e in selection.entries if not e.match.sha256]
    notes = tuple(skipped) + ((f"entries without sha256: {', '.join(no_hash)}",) if no_hash else ())
    text, _ = render_rules(deny, commented(header_lines(selection, KIND, notes), "#"), selection.allowed_users)
    check_rules(text)
    return Export(text, notes)
