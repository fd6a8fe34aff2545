"""Where fapolicyd already guards the machine: hand it deny rules instead of running a second guard.

fapolicyd reads `/etc/fapolicyd/rules.d/*.rules` (compiled by `fagenrules`), first match wins, so
appban's file sorts early (15-) to come before the distribution's allow rules. fapolicyd 1.1 has
no rules syntax check of its own, so appban checks every line against the rule grammar of
fapolicyd.rules(5) before writing; a file that fails the check, or a reload that fails, never
replaces the good file in place.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from agent.enforce.files import on_root
from agent.atomic import write_atomic
from agent.log import log_event
from agent.runner import CommandError, Runner

if TYPE_CHECKING:  # types only: the service withdraws rules without loading the deny-set builder
    from agent.config import EnforcementConfig
    from agent.enforce.deny import DenySet

logger = logging.getLogger(__name__)

RELOAD_TIMEOUT = 60.0
HEADER = "# Written by appban from the ban list in force; edits are overwritten.\n"

_DECISIONS = "allow|deny|allow_audit|deny_audit|allow_syslog|deny_syslog|allow_log|deny_log"
_ATTR = r"[a-z0-9_]+=[^\s:=]+"
_RULE = re.compile(rf"^(?:{_DECISIONS}) perm=(?:open|execute|any) (?:all|{_ATTR}(?: {_ATTR})*) : (?:all|{_ATTR}(?: {_ATTR})*)$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$|^[0-9]{1,10}$")


class RulesError(ValueError):
    """A rules file that fapolicyd would refuse; the message names the line."""


def render_rules(
    deny: DenySet, header: str = HEADER, allow_users: Mapping[str, Sequence[str]] | None = None,
) -> tuple[str, list[str]]:
    """Given a deny set, return the rules file text and what it could not express (fapolicyd
    matches full paths and hashes only, and a path with white space cannot be written).

    `allow_users` maps an entry id to users with an exception for it: their allow rule comes
    before the deny (first match wins). The guard and `appban policy export` share this writer."""
    lines = [header]
    skipped = [f"executable name {name!r} (fapolicyd has no basename match)" for name in sorted(deny.names)]
    users = _exempt_users(allow_users or {}, skipped)
    for path, entry in sorted(deny.paths.items()):
        if re.search(r"[\s:=]", path) or not path.startswith("/"):
            skipped.append(f"path {path!r} (cannot be written as a fapolicyd rule)")
            continue
        lines.append(_rules_for(entry, f"path={path}", users.get(entry, ())))
    for digest, entry in sorted(deny.sha256.items()):
        lines.append(_rules_for(entry, f"sha256hash={digest}", users.get(entry, ())))
    return "".join(lines), skipped


def _rules_for(entry: str, obj: str, users: Sequence[str]) -> str:
    allows = "".join(f"allow perm=execute uid={user} : {obj}\n" for user in users)
    return f"# entry {entry}\n{allows}deny_audit perm=execute all : {obj}\n"


def _exempt_users(allow_users: Mapping[str, Sequence[str]], skipped: list[str]) -> dict[str, list[str]]:
    """Keep the user names a rule can hold (fapolicyd reads `uid=` as a number or a name)."""
    kept: dict[str, list[str]] = {}
    for entry, names in allow_users.items():
        for name in names:
            if _USER.match(name):
                kept.setdefault(entry, []).append(name)
            else:
                skipped.append(f"exception for user {name!r} of entry {entry} (not a user name fapolicyd reads)")
    return kept


def check_rules(text: str) -> None:
    """Raise RulesError naming the first line that is not a valid fapolicyd rule."""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not _RULE.match(stripped):
            raise RulesError(f"line {number}: not a fapolicyd rule: {stripped[:120]}")
        for attr in re.findall(_ATTR, stripped.split(" : ", 1)[1]):
            key, _, value = attr.partition("=")
            if key == "sha256hash" and not _HASH.match(value):
                raise RulesError(f"line {number}: sha256hash must be 64 lower-case hex digits")
            if key in ("path", "dir") and not value.startswith("/"):
                raise RulesError(f"line {number}: {key} must be absolute")


def install_rules(path: Path, text: str, runner: Runner, reload: bool = True) -> bool:
    """Given the rules file path and new text, check it, write it and reload fapolicyd; return
    False when the file already held exactly this text (nothing to do).

    Raise RulesError (file untouched) if the text is invalid, CommandError if the reload fails
    (the previous file is put back first).
    """
    check_rules(text)
    previous = path.read_text(encoding="utf-8") if path.exists() else None
    if previous == text:
        return False
    write_atomic(path, text.encode(), 0o644, parents=True)
    if not reload:
        return True
    try:
        runner.run("fagenrules", ["--load"], timeout=RELOAD_TIMEOUT)
    except CommandError:
        if previous is None:
            os.unlink(path)
        else:
            write_atomic(path, previous.encode(), 0o644, parents=True)
        raise
    log_event(logger, logging.INFO, "fapolicyd.rules_loaded", path=str(path), rules=text.count("\ndeny"))
    return True


def fapolicyd_running(proc: str = "/proc") -> bool:
    """Return True when a fapolicyd daemon runs here (then appban writes rules for it)."""
    for name in os.listdir(proc):
        if name.isdigit():
            try:
                with open(f"{proc}/{name}/comm", encoding="utf-8") as handle:
                    if handle.read().strip() == "fapolicyd":
                        return True
            except OSError:
                continue
    return False


def withdraw_fapolicyd_rules(config: EnforcementConfig, runner: Runner) -> bool:
    """Empty appban's fapolicyd rules file (and reload fapolicyd) when it still holds deny rules,
    so that setting `enforcement.mode` back to report stops fapolicyd denying on appban's behalf
    (FapolicydRules.stop leaves them, for a service that merely stops); return True when it did.

    Raise RulesError or CommandError (file put back) as install_rules does.
    """
    path = Path(on_root(config.root, config.fapolicyd_rules))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return False
    if not text.startswith(HEADER) or text == HEADER:
        return False
    return install_rules(path, HEADER, runner)
