"""On-device network blocking: the banned services' DNS names kept out of reach through a managed
block in /etc/hosts, or a drop-in file for the local resolver (dnsmasq, unbound).

Opt-in like all blocking (`enforcement.mode: block` and `enforcement.network`), for the same
entries the exec guard blocks (`guard_entries`: action block, a violation here, no active
exception for this device), written by the export renderers so a device and a fleet resolver
block the same names. Planning is pure (`plan_network`): the new file text, or the file to
remove, or why it is refused (the run hit the one cap) — a dry run prints it. Applying it writes
atomically; the hosts file keeps every line appban did not write, and drops the block (restoring
the file as it was) once nothing is banned; a drop-in that appban did not write is never replaced.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, TextIO

from agent.atomic import write_atomic
from agent.config import Config
from agent.enforce.audit import AuditLog
from agent.enforce.deny import guard_entries
from agent.enforce.files import on_root
from agent.enforce.guard import audit_path
from agent.enforce.plan import TOO_MANY, over_cap
from agent.export import dnsmasq, hosts, unbound
from agent.export.common import Provenance, Selection, safe
from agent.export.dns import blocked_names
from agent.log import log_event
from agent.model import BanList, Device, Finding
from agent.runner import CommandError, Runner

logger = logging.getLogger(__name__)

RELOAD_TIMEOUT = 60.0
BEGIN = "# BEGIN appban managed block: banned services' names; edits here are overwritten"
BEGIN_NEWLINE = BEGIN + " (a final newline was added)"
END = "# END appban managed block"
DROPIN_HEADER = "# Written by appban (enforcement.network); removed when nothing is banned. Do not edit.\n"
DEFAULT_FILES = {
    "hosts": "/etc/hosts",
    "dnsmasq": "/etc/dnsmasq.d/appban.conf",
    "unbound": "/etc/unbound/unbound.conf.d/appban.conf",
}
LINES = {"hosts": hosts.block_lines, "dnsmasq": dnsmasq.block_lines, "unbound": unbound.block_lines}


class NetworkBlockError(ValueError):
    """A file appban must not change (someone else's drop-in, a damaged managed block)."""


@dataclass(frozen=True)
class NetworkChange:
    """What the network blocker will do to one file: write `text`, or remove the file (None)."""

    path: str
    text: str | None
    names: int
    refused: str = ""
    unchanged: bool = False

    def describe(self) -> str:
        """One line for a dry run and the audit log."""
        if self.unchanged:
            what = f"network block in {self.path} is up to date ({self.names} names)"
        elif self.text is None:
            what = f"remove {self.path} (nothing is banned)"
        else:
            what = f"write {self.names} blocked names to {self.path}"
        return what + (f" — refused: {self.refused}" if self.refused else "")


def network_path(config: Config) -> str:
    """Return the file network blocking writes, under `enforcement.root`."""
    cfg = config.enforcement
    return on_root(cfg.root, cfg.network_file or DEFAULT_FILES[cfg.network])


@dataclass(frozen=True)
class Blocked:
    """The lines that block this device's banned names, how many names and entries they cover."""

    lines: tuple[str, ...] = ()
    names: int = 0
    entries: int = 0


def blocked_lines(banlist: BanList, device: Device, config: Config, now: datetime) -> Blocked:
    """Return the lines that block this device's banned names in `enforcement.network`'s syntax
    (none when nothing is banned, or blocking is off)."""
    if config.enforcement.mode != "block":
        return Blocked()
    entries = tuple(e for e in guard_entries(banlist, device, config.enforcement, now) if e.match.domains)
    if not entries:
        return Blocked()
    selection = Selection(entries, device.groups, now, Provenance(serial=banlist.serial), device.id)
    lines = LINES[config.enforcement.network](selection)
    return Blocked(tuple(lines), len(blocked_names(selection)), len(entries))


def with_hosts_block(current: str, lines: list[str], serial: int) -> str:
    """Given the hosts file text and the lines to block, return the new text: every line appban
    did not write kept as it was, the old managed block dropped, a new one appended when there
    are lines. Raise NetworkBlockError if a managed block is not closed (fix by hand)."""
    kept = _without_block(current)
    if not lines:
        return kept
    begin = BEGIN
    if kept and not kept.endswith("\n"):
        kept, begin = kept + "\n", BEGIN_NEWLINE
    body = "".join(f"{line}\n" for line in lines)
    return f"{kept}{begin}\n# ban list serial {serial}\n{body}{END}\n"


def _without_block(text: str) -> str:
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    inside = False
    for line in lines:
        bare = line.rstrip("\r\n")
        if not inside and bare in (BEGIN, BEGIN_NEWLINE):
            inside = True
            if bare == BEGIN_NEWLINE and out and out[-1].endswith("\n"):
                out[-1] = out[-1][:-1]
            continue
        if inside:
            inside = bare != END
            continue
        out.append(line)
    if inside:
        raise NetworkBlockError(f"an appban managed block is not closed by '{END}'; fix the file by hand")
    return "".join(out)


def cap_reason(findings: Iterable[Finding]) -> str:
    """Return why this run's plan was refused as a whole (the one cap, `max_actions`), or ""."""
    marker = f"refused: {TOO_MANY}"
    return next((f.outcome[len("refused: "):] for f in findings if f.outcome.startswith(marker)), "")


def plan_network(
    config: Config, current: str | None, blocked: Blocked, serial: int, capped: str = "",
) -> NetworkChange | None:
    """Given config, the file's current text (None: absent), what to block, the list serial and
    why this run's plan hit the cap (`cap_reason`), return the change to make (None while network
    blocking is off).

    Refused under the one cap: when this run's plan was refused whole, or when more entries
    would be blocked than `max_actions` (one action per banned service, however many names it
    has), since a list that asks for too much is a mistake and is not obeyed in part.
    Raise NetworkBlockError for a file appban did not write.
    """
    cfg = config.enforcement
    if cfg.network == "none":
        return None
    path = network_path(config)
    lines = list(blocked.lines)
    refused = capped or over_cap(Counter({"dns-block entry": blocked.entries}), cfg.max_actions)
    if cfg.network == "hosts":
        text: str | None = with_hosts_block(current or "", lines, serial)
        if current is None and not lines:
            text = None
    else:
        if current is not None and not current.startswith(DROPIN_HEADER):
            raise NetworkBlockError(f"{path} was not written by appban; set enforcement.network_file to another file")
        text = DROPIN_HEADER + f"# ban list serial {serial}\n" + "".join(f"{l}\n" for l in lines) if lines else None
    return NetworkChange(path, text, blocked.names, refused, unchanged=text == current)


def keep_network_block(
    banlist: BanList, config: Config, device: Device, runner: Runner, out: TextIO, now: datetime,
    findings: Iterable[Finding] = (), dry_run: bool = False,
) -> NetworkChange | None:
    """Bring the network block in step with the list (or, with blocking off, take it back), given
    this run's enforced findings (whose outcomes say whether the run hit the cap): plan, then
    print (dry run) or apply, audit and log. Errors are logged and audited, never raised: the
    scan's report must still be kept."""
    cfg = config.enforcement
    if cfg.network == "none":
        return None
    path = Path(network_path(config))
    audit = AuditLog(audit_path(config))
    try:
        if path.is_symlink():
            raise NetworkBlockError(f"{path} is a symbolic link; point enforcement.network_file at the real file")
        current = path.read_text(encoding="utf-8") if path.exists() else None
        change = plan_network(config, current, blocked_lines(banlist, device, config, now), banlist.serial,
                              cap_reason(findings))
    except (OSError, UnicodeDecodeError, NetworkBlockError) as exc:
        _failed(audit, str(path), exc)
        return None
    if change is None or change.unchanged:
        return change
    if dry_run or cfg.dry_run:
        out.write(f"enforcement plan: {change.describe()}\n")
        return change
    if change.refused:
        audit.write("refused", action="network-block", target=change.path, outcome=f"refused: {change.refused}")
        log_event(logger, logging.WARNING, "network.refused", path=change.path, reason=change.refused)
        return change
    try:
        _apply(change, path, runner, cfg.network_reload, current)
    except (OSError, CommandError) as exc:
        _failed(audit, change.path, exc)
        return change
    audit.write("done", action="network-block", target=change.path, outcome=change.describe())
    log_event(logger, logging.INFO, "network.updated", path=change.path, names=change.names, serial=banlist.serial)
    return change


def _apply(change: NetworkChange, path: Path, runner: Runner, reload: tuple[str, ...], previous: str | None) -> None:
    """Write (or remove) the file, then run the reload command; if the reload fails, put the
    previous file back first, so the resolver's next start reads what it last loaded."""
    _replace(path, change.text, previous)
    if not reload:
        return
    try:
        runner.run(reload[0], list(reload[1:]), timeout=RELOAD_TIMEOUT)
    except CommandError:
        _replace(path, previous, change.text)
        raise


def _replace(path: Path, text: str | None, before: str | None) -> None:
    if text is None:
        if before is not None:
            os.unlink(path)
        return
    mode = path.stat().st_mode & 0o777 if before is not None else 0o644
    write_atomic(path, text.encode("utf-8"), mode, parents=True)


def _failed(audit: AuditLog, path: str, exc: Exception) -> None:
    why = safe(" ".join(str(exc).split()) or type(exc).__name__)
    audit.write("failed", action="network-block", target=path, outcome=f"failed: {why}")
    log_event(logger, logging.ERROR, "network.failed", path=path, error=why)
