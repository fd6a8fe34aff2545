"""The one escape for text that reaches a person: terminals, log lines, notifications.

Names, paths, serials, reasons and server answers come from phones, MDM exports, users' files
and remote servers; a line break in one must not forge a line of a report or a log, and an
escape sequence must not repaint a terminal. Every human-facing sink (the report table, the text
log, `appban quarantine list`, messages on stderr, desktop notifications) passes such text
through `printable`; machine formats (JSON) escape by their own rules.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


def printable(text: str) -> str:
    """Return `text` with every character that is not printable (control characters, line and
    paragraph separators, …) shown as U+FFFD."""
    return text if text.isprintable() else "".join(c if c.isprintable() else REPLACEMENT for c in text)
