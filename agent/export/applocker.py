"""AppLocker (Windows): a policy XML for `Set-AppLockerPolicy -XmlPolicy FILE [-Merge]`, Intune's
AppLocker CSP or Group Policy, in the shape of Microsoft's published AppLocker XSD.

What the list can give AppLocker:
- Store package names (`windows` ids such as `BytedancePte.Ltd.TikTok`) -> Appx publisher rules
  on the package name, any publisher (the list does not hold signing subjects);
- publishers written as a certificate subject (`O=..., C=...`, no wildcard) -> Exe publisher rules;
  Add/Remove Programs publisher globs (`ByteDance*`) are not signing subjects and are reported;
- executable names ending in `.exe` -> path rules `*\\name.exe`;
- sha256 -> hash rules of type SHA256Flat (the list's hashes are flat file hashes).

AppLocker denies everything not allowed once a collection has rules, so each collection also
carries Microsoft's default allow rules (Windows and Program Files folders, administrators, signed
packaged apps); deny rules win over them. Audit mode (AuditOnly) unless `--enforce`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from agent.export.common import Export, Selection, commented, header_lines, safe, stable_id, user_exception_notes
from agent.model import Entry, spelled

KIND = "applocker"
EVERYONE, ADMINISTRATORS = "S-1-1-0", "S-1-5-32-544"
_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z0-9.-]+$")
_SUBJECT = re.compile(r"^(?:[A-Z]{1,2}=[^=,*]+)(?:,\s*[A-Z]{1,2}=[^=,*]+)*$", re.IGNORECASE)
DEFAULTS = {
    "Exe": [("path", "%WINDIR%\\*", EVERYONE), ("path", "%PROGRAMFILES%\\*", EVERYONE), ("path", "*", ADMINISTRATORS)],
    "Appx": [("publisher", "*", EVERYONE)],
}


def render(selection: Selection) -> Export:
    """Given a Selection, return the AppLocker policy XML."""
    mode = "Enabled" if selection.enforce else "AuditOnly"
    root = ET.Element("AppLockerPolicy", Version="1")
    notes = list(user_exception_notes(selection, KIND))
    exe = _collection(root, "Exe", mode)
    appx = _collection(root, "Appx", mode)
    for entry in selection.entries:
        _entry_rules(entry, exe, appx, notes)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    comment = "<!--\n" + commented(header_lines(selection, KIND, tuple(notes)), " ").replace("--", "- -") + "-->\n"
    return Export('<?xml version="1.0" encoding="utf-8"?>\n' + comment + body + "\n", tuple(notes))


def _collection(root: ET.Element, kind: str, mode: str) -> ET.Element:
    collection = ET.SubElement(root, "RuleCollection", Type=kind, EnforcementMode=mode)
    for rule, value, sid in DEFAULTS[kind]:
        name = f"(Default rule) {value} for {'Everyone' if sid == EVERYONE else 'Administrators'}"
        if rule == "path":
            _path_rule(collection, ("default", kind, value, sid), name, value, "Allow", sid)
        else:
            _publisher_rule(collection, ("default", kind, value, sid), name, "*", "*", "Allow", sid)
    return collection


def _entry_rules(entry: Entry, exe: ET.Element, appx: ET.Element, notes: list[str]) -> None:
    label = f"{entry.name} (appban entry {entry.id})"
    for package in spelled(entry.match.windows):
        if _PACKAGE.match(package) and "_" not in package:
            _publisher_rule(appx, (entry.id, "appx", package.casefold()), f"Deny {label}: {package}", "*", package,
                            "Deny", EVERYONE)
    for publisher in spelled(entry.match.publishers):
        if _SUBJECT.match(publisher):
            _publisher_rule(exe, (entry.id, "publisher", publisher.casefold()), f"Deny {label}: {publisher}",
                            publisher, "*", "Deny", EVERYONE)
        else:
            notes.append(f"publisher {publisher!r} of entry {entry.id} (not a signing certificate subject)")
    for name in entry.match.executables:
        if name.endswith(".exe"):
            _path_rule(exe, (entry.id, "path", name), f"Deny {label}: {name}", f"*\\{name}", "Deny", EVERYONE)
    for digest in entry.match.sha256:
        rule = _rule(exe, "FileHashRule", (entry.id, "hash", digest), f"Deny {label}: sha256 {digest[:12]}", "Deny",
                     EVERYONE)
        condition = ET.SubElement(ET.SubElement(rule, "Conditions"), "FileHashCondition")
        ET.SubElement(condition, "FileHash", Type="SHA256Flat", Data="0x" + digest.upper(),
                      SourceFileName=safe(entry.name), SourceFileLength="0")


def _rule(parent: ET.Element, tag: str, key: tuple[str, ...], name: str, action: str, sid: str) -> ET.Element:
    return ET.SubElement(parent, tag, Id=str(stable_id(*key)), Name=safe(name)[:1024], Description="",
                         UserOrGroupSid=sid, Action=action)


def _path_rule(parent: ET.Element, key: tuple[str, ...], name: str, path: str, action: str, sid: str) -> None:
    rule = _rule(parent, "FilePathRule", key, name, action, sid)
    ET.SubElement(ET.SubElement(rule, "Conditions"), "FilePathCondition", Path=safe(path))


def _publisher_rule(parent: ET.Element, key: tuple[str, ...], name: str, publisher: str, product: str,
                    action: str, sid: str) -> None:
    rule = _rule(parent, "FilePublisherRule", key, name, action, sid)
    condition = ET.SubElement(ET.SubElement(rule, "Conditions"), "FilePublisherCondition",
                              PublisherName=safe(publisher), ProductName=safe(product), BinaryName="*")
    ET.SubElement(condition, "BinaryVersionRange", LowSection="*", HighSection="*")
