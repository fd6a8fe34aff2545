"""An Apple configuration profile (.mobileconfig) with a Restrictions payload
(`com.apple.applicationaccess`) whose `blockedAppBundleIDs` keeps the banned apps from launching
(supervised iOS/iPadOS devices). UUIDs derive from the list's serial and the scope, so a
re-export of the same list replaces the same profile.

Format: Apple's Restrictions payload (developer.apple.com/documentation/devicemanagement/restrictions,
apple/device-management mdm/profiles/com.apple.applicationaccess.yaml)."""

from __future__ import annotations

import plistlib

from agent.export.common import Export, Selection, header_lines, safe, stable_id, user_exception_notes
from agent.model import spelled

KIND = "ios-mobileconfig"
IDENTIFIER = "org.appban.banned-apps"


def render(selection: Selection) -> Export:
    """Given a Selection, return the profile as an XML property list (unsigned; sign it with your MDM)."""
    bundles = list(dict.fromkeys(safe(b) for e in selection.entries for b in spelled(e.match.ios)))
    notes = user_exception_notes(selection, KIND)
    lines = header_lines(selection, KIND, notes)
    scope = ",".join(selection.groups) + "|" + selection.device
    restrictions = {
        "PayloadType": "com.apple.applicationaccess", "PayloadVersion": 1,
        "PayloadIdentifier": f"{IDENTIFIER}.restrictions",
        "PayloadUUID": stable_id("restrictions", scope).upper(),
        "PayloadDisplayName": "Banned apps",
        "blockedAppBundleIDs": bundles,
    }
    profile = {
        "PayloadType": "Configuration", "PayloadVersion": 1,
        "PayloadIdentifier": IDENTIFIER,
        "PayloadUUID": stable_id("profile", scope).upper(),
        "PayloadDisplayName": f"appban: banned apps (ban list serial {selection.provenance.serial})",
        "PayloadDescription": "\n".join(lines),
        "PayloadOrganization": safe(selection.provenance.publisher) or "appban",
        "PayloadContent": [restrictions],
    }
    xml = plistlib.dumps(profile, sort_keys=False).decode("utf-8")
    comment = "<!--\n" + "".join(f"  {line.replace('--', '- -')}\n" for line in lines) + "-->\n"
    head, _, rest = xml.partition("<plist")
    return Export(head + comment + "<plist" + rest, notes)
