"""Santa (macOS): the rules file `santactl rule --import FILE` reads, `{"rules": [...]}` with the
fields of Santa's sync protocol (identifier, policy, rule_type, custom_msg).

From the list: sha256 -> BINARY rules. A SIGNINGID rule needs the signing Team ID in front of the
bundle id (`TEAMID:com.example.app`) and the list holds bundle ids only, so macOS bundle ids are
reported as not expressed rather than written as rules Santa would never match. JSON has no
comments: the provenance is in each rule's custom_msg, which Santa shows when it blocks.

Format: Santa's rules (docs/concepts/rules.md) and the rule fields of its sync protocol
(docs/development/sync-protocol.md), which `santactl rule --import/--export` use."""

from __future__ import annotations

import json

from agent.export.common import Export, Selection, user_exception_notes
from agent.model import spelled

KIND = "santa"


def render(selection: Selection) -> Export:
    """Given a Selection, return the import file text."""
    prov = selection.provenance
    rules = []
    seen: set[str] = set()
    for entry in selection.entries:
        message = f"{entry.name} is banned on this device ({entry.id}, ban list serial {prov.serial})"
        for digest in entry.match.sha256:
            if digest not in seen:
                seen.add(digest)
                rules.append({"identifier": digest, "policy": "BLOCKLIST", "rule_type": "BINARY",
                              "custom_msg": message})
    bundles = sorted({b for e in selection.entries for b in spelled(e.match.macos)})
    notes = user_exception_notes(selection, KIND)
    if bundles:
        notes += (f"macOS bundle ids without a Team ID (SIGNINGID rules need TEAMID:id): {', '.join(bundles)}",)
    return Export(json.dumps({"rules": rules}, indent=2, ensure_ascii=False) + "\n", notes)
