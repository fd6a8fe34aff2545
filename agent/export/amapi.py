"""Android Management API: the `applications[]` fragment of a policy, each banned package with
`installType: BLOCKED` (the app is removed and cannot be installed). Merge it into the policy
you patch; JSON has no comments, so the provenance goes on stderr and in the CLI's notes.

Format: developers.google.com/android/management/reference/rest/v1/enterprises.policies
(Policy.applications, ApplicationPolicy.installType)."""

from __future__ import annotations

import json

from agent.export.common import Export, Selection, user_exception_notes
from agent.model import spelled

KIND = "amapi"


def render(selection: Selection) -> Export:
    """Given a Selection, return `{"applications": [...]}` with package names as the list spells them."""
    packages = dict.fromkeys(p for e in selection.entries for p in spelled(e.match.android))
    apps = [{"packageName": p, "installType": "BLOCKED"} for p in packages]
    notes = user_exception_notes(selection, KIND)
    return Export(json.dumps({"applications": apps}, indent=2) + "\n", notes)
