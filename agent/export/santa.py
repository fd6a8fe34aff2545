"""Santa (macOS): the rules file `santactl rule --import FILE` reads, `{"rules": [...]}` with the
fields of Santa's sync protocol (identifier, policy, rule_type, custom_msg).

From the list, most specific first as Santa evaluates them (CDHASH, BINARY, SIGNINGID, TEAMID):

- `cdhashes` -> CDHASH rules (40 lower-case hex digits; Santa applies them to hardened-runtime code);
- `sha256` -> BINARY rules (the whole file's hash);
- `signing_ids` -> SIGNINGID rules, `TEAMID:signing.id` (the Team ID upper-cased, the signing id
  as the list spells it: signing ids are case-sensitive) or `platform:signing.id`;
- `team_ids` -> TEAMID rules (upper-cased): everything that developer team signs.

Every rule is BLOCKLIST. A bare macOS bundle id is not written as a rule: a SIGNINGID rule needs
the Team ID in front, and guessing `TEAMID:bundle.id` from a team and a bundle id could name code
the team never signed that way; bundle ids no signing id covers are reported as not expressed.
JSON has no comments: the provenance is in each rule's custom_msg, which Santa shows when it blocks.

Format: the rule types of Santa's binary authorization (northpolesec/santa
docs/docs/features/binary-authorization.md, "Rule Types") and the Rule object of its sync
protocol (docs/development/sync-protocol.md, "Rules Objects"), which `santactl rule --import`
and `--export` use too.
"""

from __future__ import annotations

import json
from typing import Callable

from agent.export.common import Export, Selection, user_exception_notes
from agent.model import Entry, spelled

KIND = "santa"
RULE_TYPES: tuple[tuple[str, Callable[[Entry], tuple[str, ...]]], ...] = (
    ("CDHASH", lambda e: tuple(h.lower() for h in e.match.cdhashes)),
    ("BINARY", lambda e: tuple(h.lower() for h in e.match.sha256)),
    ("SIGNINGID", lambda e: tuple(_signing_id(s) for s in spelled(e.match.signing_ids))),
    ("TEAMID", lambda e: tuple(t.upper() for t in spelled(e.match.team_ids))),
)
"""(Santa rule_type, the identifiers of an entry it is written for), in Santa's evaluation order."""


def render(selection: Selection) -> Export:
    """Given a Selection, return the import file text."""
    prov = selection.provenance
    rules = []
    seen: set[tuple[str, str]] = set()
    for rule_type, identifiers in RULE_TYPES:
        for entry in selection.entries:
            message = f"{entry.name} is banned on this device ({entry.id}, ban list serial {prov.serial})"
            for identifier in identifiers(entry):
                if (rule_type, identifier) not in seen:
                    seen.add((rule_type, identifier))
                    rules.append({"identifier": identifier, "policy": "BLOCKLIST", "rule_type": rule_type,
                                  "custom_msg": message})
    signed = {s.partition(":")[2] for e in selection.entries for s in e.match.signing_ids}  # folded, as bundle ids compare
    bundles = sorted({b for e in selection.entries for b in spelled(e.match.macos) if b.casefold() not in signed})
    notes = user_exception_notes(selection, KIND)
    if bundles:
        notes += ("macOS bundle ids without a signing id (SIGNINGID rules need TEAMID:id; add `signing_ids`): "
                  f"{', '.join(bundles)}",)
    return Export(json.dumps({"rules": rules}, indent=2, ensure_ascii=False) + "\n", notes)


def _signing_id(value: str) -> str:
    """Return a signing id as Santa matches it: the Team ID part upper-case, `platform` as is."""
    team, _, ident = value.partition(":")
    return f"{'platform' if team.lower() == 'platform' else team.upper()}:{ident}"
