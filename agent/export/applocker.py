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
    """Given a Selection, return the AppLocker policy XML.

    Written as text rather than through ElementTree: serialising a 10,000-entry policy that way
    takes most of a second; every value passes through `_attr`, and the tests parse the result."""
    mode = "Enabled" if selection.enforce else "AuditOnly"
    notes = list(user_exception_notes(selection, KIND))
    rules: dict[str, list[str]] = {"Exe": _defaults("Exe"), "Appx": _defaults("Appx")}
    for entry in selection.entries:
        _entry_rules(entry, rules, notes)
    comment = "<!--\n" + commented(header_lines(selection, KIND, tuple(notes)), " ").replace("--", "- -") + "-->\n"
    body = "".join(f'  <RuleCollection Type="{kind}" EnforcementMode="{mode}">\n{"".join(items)}  </RuleCollection>\n'
                   for kind, items in rules.items())
    return Export(f'<?xml version="1.0" encoding="utf-8"?>\n{comment}<AppLockerPolicy Version="1">\n{body}</AppLockerPolicy>\n',
                  tuple(notes))


def _defaults(kind: str) -> list[str]:
    out = []
    for rule, value, sid in DEFAULTS[kind]:
        name = f"(Default rule) {value} for {'Everyone' if sid == EVERYONE else 'Administrators'}"
        if rule == "path":
            out.append(_path_rule(("default", kind, value, sid), name, value, "Allow", sid))
        else:
            out.append(_publisher_rule(("default", kind, value, sid), name, "*", "*", "Allow", sid))
    return out


def _entry_rules(entry: Entry, rules: dict[str, list[str]], notes: list[str]) -> None:
    label = f"{entry.name} (appban entry {entry.id})"
    for package in spelled(entry.match.windows):
        if _PACKAGE.match(package) and "_" not in package:
            rules["Appx"].append(_publisher_rule((entry.id, "appx", package.casefold()), f"Deny {label}: {package}",
                                                 "*", package, "Deny", EVERYONE))
    for publisher in spelled(entry.match.publishers):
        if _SUBJECT.match(publisher):
            rules["Exe"].append(_publisher_rule((entry.id, "publisher", publisher.casefold()),
                                                f"Deny {label}: {publisher}", publisher, "*", "Deny", EVERYONE))
        else:
            notes.append(f"publisher {publisher!r} of entry {entry.id} (not a signing certificate subject)")
    for name in entry.match.executables:
        if name.endswith(".exe"):
            rules["Exe"].append(_path_rule((entry.id, "path", name), f"Deny {label}: {name}", f"*\\{name}", "Deny",
                                           EVERYONE))
    for digest in entry.match.sha256:
        head = _head((entry.id, "hash", digest), f"Deny {label}: sha256 {digest[:12]}", "Deny", EVERYONE)
        rules["Exe"].append(
            f'    <FileHashRule {head}>\n      <Conditions>\n        <FileHashCondition>\n'
            f'          <FileHash Type="SHA256Flat" Data="0x{digest.upper()}" SourceFileName={_attr(entry.name)} '
            f'SourceFileLength="0" />\n        </FileHashCondition>\n      </Conditions>\n    </FileHashRule>\n')


_XML_SPECIAL = re.compile(r'[&<>"]')
_XML_ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}


def _attr(value: str) -> str:
    """Return a double-quoted XML attribute value, control characters escaped first."""
    return '"' + _XML_SPECIAL.sub(lambda m: _XML_ENTITY[m.group()], safe(value)) + '"'


def _head(key: tuple[str, ...], name: str, action: str, sid: str) -> str:
    return (f'Id="{stable_id(*key)}" Name={_attr(name[:1024])} Description="" UserOrGroupSid="{sid}" '
            f'Action="{action}"')


def _path_rule(key: tuple[str, ...], name: str, path: str, action: str, sid: str) -> str:
    return (f'    <FilePathRule {_head(key, name, action, sid)}>\n      <Conditions>\n'
            f'        <FilePathCondition Path={_attr(path)} />\n      </Conditions>\n    </FilePathRule>\n')


def _publisher_rule(key: tuple[str, ...], name: str, publisher: str, product: str, action: str, sid: str) -> str:
    return (f'    <FilePublisherRule {_head(key, name, action, sid)}>\n      <Conditions>\n'
            f'        <FilePublisherCondition PublisherName={_attr(publisher)} ProductName={_attr(product)} '
            f'BinaryName="*">\n          <BinaryVersionRange LowSection="*" HighSection="*" />\n'
            f'        </FilePublisherCondition>\n      </Conditions>\n    </FilePublisherRule>\n')
