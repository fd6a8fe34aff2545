"""Microsoft Intune compliance policies with restricted apps (Microsoft Graph
`iosCompliancePolicy` and `androidCompliancePolicy`, property `restrictedApps`, items
`appListItem`): a device with a listed app is non-compliant and the scheduled action blocks it.

The JSON is the body of `POST /deviceManagement/deviceCompliancePolicies`; its `description`
carries the provenance (JSON has no comments).

Format: learn.microsoft.com/graph/api/resources/intune-deviceconfig-ioscompliancepolicy,
…-androidcompliancepolicy and …-applistitem (Microsoft Graph v1.0)."""

from __future__ import annotations

import json
from typing import Any, Callable

from agent.export.common import Export, Selection, header_lines, user_exception_notes
from agent.model import Entry, spelled

IOS, ANDROID = "intune-ios", "intune-android"


def _policy(selection: Selection, kind: str, odata: str, ids: Callable[[Entry], tuple[str, ...]]) -> Export:
    apps: list[dict[str, Any]] = []
    seen: set[str] = set()
    for entry in selection.entries:
        for app_id in ids(entry):
            if app_id not in seen:
                seen.add(app_id)
                apps.append({"@odata.type": "#microsoft.graph.appListItem", "name": entry.name,
                             "publisher": entry.vendor or None, "appStoreUrl": None, "appId": app_id})
    notes = user_exception_notes(selection, kind)
    body = {
        "@odata.type": odata,
        "displayName": f"appban: banned apps (ban list serial {selection.provenance.serial})",
        "description": " | ".join(header_lines(selection, kind, notes))[:1024],
        "restrictedApps": apps,
        "scheduledActionsForRule": [{
            "ruleName": "PasswordRequired",
            "scheduledActionConfigurations": [{"actionType": "block", "gracePeriodHours": 0}],
        }],
    }
    return Export(json.dumps(body, indent=2, ensure_ascii=False) + "\n", notes)


def render_ios(selection: Selection) -> Export:
    """Given a Selection, return an iOS compliance policy (bundle ids as the list spells them)."""
    return _policy(selection, IOS, "#microsoft.graph.iosCompliancePolicy", lambda e: spelled(e.match.ios))


def render_android(selection: Selection) -> Export:
    """Given a Selection, return an Android compliance policy (package names as the list spells them)."""
    return _policy(selection, ANDROID, "#microsoft.graph.androidCompliancePolicy", lambda e: spelled(e.match.android))
