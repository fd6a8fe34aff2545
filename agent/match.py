"""Match apps against a ban list: a pure function of (apps, devices, ban list, time).

The list is compiled once into hash indexes (identifiers per platform, exact names, executable
names, hashes) and glob indexes keyed by a literal fragment of each pattern, so the cost grows with
apps + rules rather than apps x rules, and a fleet-sized inventory is matched in well under a second.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections import defaultdict
from datetime import datetime
from typing import Iterable, Mapping

from agent.model import (
    App, BanException, BanList, Device, Entry, Finding, Status, aware,
)
from agent.records import dataclass
from agent.sources import MATCH_KINDS_OF_SOURCES, facts
from agent.versions import VersionSpec, parse_spec

_WILDCARD = re.compile(r"[*?\[]")
_LITERAL_RUNS = re.compile(r"\[[^\]]*\]|[*?]")
_STATUS_ORDER = {"violation": 0, "advisory": 1, "upcoming": 2, "exempt": 3}

FOLDED_FACTS = ("former_names", "launcher_programs")
"""Facts of a folded launcher the matcher reads on its owner's record (see inventory/dedupe.py)."""

Hit = tuple[int, str]
"""(entry index, how it matched — e.g. `android:com.zhiliaoapp.musically`)."""


class Glob:
    """One case-folded glob: a literal fragment every match contains, tested before the regex,
    which is compiled on first need (a 10,000-entry list has ~1,200 globs, and compiling them all
    cost ~110 ms of every check although a typical inventory reaches a handful)."""

    __slots__ = ("pattern", "literal", "anchored", "hit", "_regex")

    def __init__(self, pattern: str, literal: str, anchored: bool, hit: Hit) -> None:
        self.pattern, self.literal, self.anchored, self.hit = pattern, literal, anchored, hit
        self._regex: re.Pattern[str] | None = None

    def matches(self, text: str) -> bool:
        """Whether the (already case-folded) text matches the whole pattern."""
        if not (text.startswith(self.literal) if self.anchored else self.literal in text):
            return False
        if self._regex is None:
            self._regex = re.compile(fnmatch.translate(self.pattern), re.DOTALL)
        return self._regex.match(text) is not None


class GlobIndex:
    """Case-insensitive globs, indexed so that a text is only tried against plausible patterns.

    Exact patterns are a dict lookup; `prefix*`-style patterns are keyed by their first three
    characters; patterns that start with a wildcard are keyed by a trigram of their longest
    literal run; only patterns with no three-character literal at all are tried on every text.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.exact: dict[str, list[Hit]] = defaultdict(list)
        self.by_prefix: dict[str, list[Glob]] = defaultdict(list)
        self.by_trigram: dict[str, list[Glob]] = defaultdict(list)
        self.loose: list[Glob] = []

    def add(self, pattern: str, index: int) -> None:
        hit = (index, f"{self.kind}:{pattern}")
        if not _WILDCARD.search(pattern):
            self.exact[pattern].append(hit)
            return
        head = _WILDCARD.split(pattern, 1)[0]
        if len(head) >= 3:
            self.by_prefix[head[:3]].append(Glob(pattern, head, True, hit))
            return
        longest = max(_LITERAL_RUNS.split(pattern), key=len)
        glob = Glob(pattern, longest, False, hit)
        if len(longest) >= 3:
            self.by_trigram[longest[:3]].append(glob)
        else:
            self.loose.append(glob)

    @property
    def active(self) -> bool:
        """Whether any pattern was added (most lists have no publisher globs at all)."""
        return bool(self.exact or self.by_prefix or self.by_trigram or self.loose)

    def lookup(self, text: str) -> Iterable[Hit]:
        """Yield every hit whose pattern matches the (already case-folded) text."""
        if not text:
            return
        yield from self.exact.get(text, ())
        for glob in self.by_prefix.get(text[:3], ()):
            if glob.matches(text):
                yield glob.hit
        if self.by_trigram:
            seen: set[str] = set()
            for i in range(len(text) - 2):
                gram = text[i:i + 3]
                if gram in self.by_trigram and gram not in seen:
                    seen.add(gram)
                    for glob in self.by_trigram[gram]:
                        if glob.matches(text):
                            yield glob.hit
        for glob in self.loose:
            if glob.matches(text):
                yield glob.hit


@dataclass(frozen=True)
class CompiledBanList:
    """A ban list turned into lookups; build it once per list with `compile_banlist`."""

    banlist: BanList
    ids: Mapping[str, Mapping[str, list[Hit]]]
    names: GlobIndex
    publishers: GlobIndex
    executables: Mapping[str, list[Hit]]
    sha256: Mapping[str, list[Hit]]
    versions: Mapping[int, VersionSpec]
    exceptions: Mapping[str, tuple[BanException, ...]]


def compile_banlist(banlist: BanList) -> CompiledBanList:
    """Given a validated ban list, return its indexes (identifiers are already case-folded)."""
    ids: dict[str, dict[str, list[Hit]]] = defaultdict(lambda: defaultdict(list))
    names, publishers = GlobIndex("names"), GlobIndex("publishers")
    executables: dict[str, list[Hit]] = defaultdict(list)
    hashes: dict[str, list[Hit]] = defaultdict(list)
    versions: dict[int, VersionSpec] = {}
    for index, entry in enumerate(banlist.entries):
        for kind in MATCH_KINDS_OF_SOURCES:
            for ident in getattr(entry.match, kind):
                ids[kind][ident].append((index, f"{kind}:{ident}"))
        for pattern in entry.match.names:
            names.add(pattern, index)
        for pattern in entry.match.publishers:
            publishers.add(pattern, index)
        for exe in entry.match.executables:
            executables[exe].append((index, f"executables:{exe}"))
        for digest in entry.match.sha256:
            hashes[digest].append((index, f"sha256:{digest}"))
        if entry.versions:
            versions[index] = parse_spec(entry.versions)
    by_entry: dict[str, list[BanException]] = defaultdict(list)
    for exc in banlist.exceptions:
        by_entry[exc.entry].append(exc)
    return CompiledBanList(
        banlist=banlist, ids=ids, names=names, publishers=publishers, executables=executables,
        sha256=hashes, versions=versions, exceptions={k: tuple(v) for k, v in by_entry.items()},
    )


def _hits(app: App, compiled: CompiledBanList, texts: dict[tuple[int, str], tuple[Hit, ...]]) -> list[Hit]:
    """Return every (entry, reason) pair that names this app, before scope and versions.

    Glob results are memoized in `texts` per distinct name or publisher: a few publishers
    ("Microsoft Corporation", "Google LLC") cover most apps of a fleet.
    """
    hits: list[Hit] = []
    kind = facts(app.source).match_kind
    table = compiled.ids.get(kind) if kind else None
    if table:
        hits += table.get(app.id.casefold(), ())
        for alias in app.aliases:
            hits += table.get(alias.casefold(), ())
        if kind == "windows" and app.name:  # Add/Remove Programs entries are known by display name
            hits += table.get(app.name.casefold(), ())
    named = [(compiled.names, app.name), (compiled.publishers, app.publisher)]
    if app.extra:
        named += [(compiled.names, former) for former in app.extra_value("former_names").split(",") if former]
    for index, text in named:
        if text and index.active:
            key = (id(index), text)
            found = texts.get(key)
            if found is None:
                found = texts[key] = tuple(index.lookup(text.casefold()))
            hits += found
    if compiled.executables:
        if app.path:
            hits += compiled.executables.get(os.path.basename(app.path).casefold(), ())
        if app.extra:
            for program in app.extra_value("launcher_programs").split(","):
                if program:
                    hits += compiled.executables.get(program.casefold(), ())
        if app.source == "process":
            hits += compiled.executables.get(app.id.casefold(), ())
    if app.sha256 and compiled.sha256:
        hits += compiled.sha256.get(app.sha256.casefold(), ())
    return hits


MEMO_LIMIT = 1 << 16
"""Repeated app ids whose hits `match` remembers, and identities per id (below): bounds, so no
inventory can grow the memo without limit (past them, hits are simply computed again)."""
IDENTITIES_PER_ID = 16


def _identity(app: App) -> tuple[object, ...]:
    """Everything the matcher reads of an app but the device and version: two records with the
    same identity get the same hits (a fleet repeats each app on thousands of devices)."""
    if app.extra:
        folded = tuple(app.extra_value(k) for k in FOLDED_FACTS)
        return (app.source, app.id, app.name, app.publisher, app.path, app.aliases, app.sha256, folded)
    return (app.source, app.id, app.name, app.publisher, app.path, app.aliases, app.sha256)


def _casefolded(groups: Iterable[str]) -> frozenset[str]:
    return frozenset(g.casefold() for g in groups)


def scope_status(
    entry: Entry, device: Device, app: App, exceptions: Iterable[BanException], now: datetime,
) -> tuple[Status, BanException | None] | None:
    """Return the status this entry gives this app on this device, or None when out of scope.

    Exempt groups win over everything; an active individual exception turns a finding exempt;
    otherwise a device in `applies_to` (or any device when it is omitted) is in violation, one in
    `advisory_for` gets an advisory, and an entry not yet effective makes either `upcoming`.
    A device whose kind or ownership the entry does not cover is out of scope before all that.
    """
    if not covers_device(entry, device):
        return None
    groups = _casefolded(device.groups)
    if groups & _casefolded(entry.exempt):
        return "exempt", None
    if entry.applies_to is None or groups & _casefolded(entry.applies_to):
        status: Status = "violation"
    elif groups & _casefolded(entry.advisory_for):
        status = "advisory"
    else:
        return None
    for exc in exceptions:
        if aware(exc.expires) > now and _covers(exc, device, app):
            return "exempt", exc
    if entry.effective is not None and now < aware(entry.effective):
        return "upcoming", None
    return status, None


def covers_device(entry: Entry, device: Device) -> bool:
    """Whether the entry's `device_kinds` and `ownership` include this device. A device of
    unknown ownership stays in scope: not knowing who owns a phone must not hide a banned app
    (blocking through an MDM asks for a known ownership, see enforce/mdm.py)."""
    if entry.device_kinds and device.kind not in entry.device_kinds:
        return False
    return not entry.ownership or device.ownership == "unknown" or device.ownership in entry.ownership


def _covers(exc: BanException, device: Device, app: App) -> bool:
    devices_ok = not exc.devices or device.id in exc.devices
    users_ok = not exc.users or app.user in exc.users
    return devices_ok and users_ok


class Matcher:
    """Match one app at a time against a compiled list: the streaming form of `match`.

    Why in two steps: which entries name an app (`candidates`) depends on the app alone, while
    whether they apply (`findings`) depends on its device's final groups — which for a merged
    MDM export are known only once every file is read. A streamed check asks for the candidates
    of each row as it arrives, keeps the few apps that have some, and scopes them at the end.
    """

    def __init__(self, compiled: CompiledBanList, now: datetime) -> None:
        self.compiled = compiled
        self.now = aware(now)
        self._seen: set[str] = set()
        self._memo: dict[str, dict[tuple[object, ...], tuple[Hit, ...]]] = {}
        self._texts: dict[tuple[int, str], tuple[Hit, ...]] = {}

    def _hits(self, app: App) -> tuple[Hit, ...]:
        # Fleets and MDM exports repeat the same app on thousands of devices, interleaved device
        # by device (and one id may name different apps on two platforms): from the second time
        # an id is seen, remember the hits of each identity it came with. An id seen once costs
        # one string in a set, so a machine's 100,000 unique packages build no keys at all.
        known = self._memo.get(app.id)
        if known is None:
            hits = tuple(_hits(app, self.compiled, self._texts))
            if app.id not in self._seen:
                self._seen.add(app.id)
            elif len(self._memo) < MEMO_LIMIT:
                self._memo[app.id] = {_identity(app): hits}
            return hits
        key = _identity(app)
        hits = known.get(key)  # type: ignore[assignment]
        if hits is None:
            hits = tuple(_hits(app, self.compiled, self._texts))
            if len(known) < IDENTITIES_PER_ID:
                known[key] = hits
        return hits

    def candidates(self, app: App) -> tuple[Hit, ...]:
        """Given an app, return the entries that name it and whose `versions` include its
        version, each once with its lowest reason — before any device scope (empty for almost
        every app of a fleet)."""
        hits = self._hits(app)
        if not hits:
            return ()
        matched: dict[int, str] = {}
        for index, label in hits:
            if index not in matched or label < matched[index]:
                matched[index] = label
        versions = self.compiled.versions
        return tuple(
            (index, label) for index, label in matched.items()
            if (spec := versions.get(index)) is None or spec.contains(app.version, facts(app.source).version_scheme)
        )

    def findings(self, app: App, device: Device, candidates: Iterable[Hit]) -> list[Finding]:
        """Given an app, its device and its candidates, return the findings their scope gives."""
        entries, exceptions = self.compiled.banlist.entries, self.compiled.exceptions
        found: list[Finding] = []
        for index, label in candidates:
            entry = entries[index]
            scoped = scope_status(entry, device, app, exceptions.get(entry.id, ()), self.now)
            if scoped is not None:
                found.append(Finding(scoped[0], entry, app, device.id, label, scoped[1]))
        return found


def match(
    apps: Iterable[App], devices: Mapping[str, Device], compiled: CompiledBanList, now: datetime,
) -> list[Finding]:
    """Given apps, their devices by id, a compiled ban list and the time, return sorted findings.

    One finding per (app, entry); the order of apps or entries in the input never changes the result.
    """
    matcher = Matcher(compiled, now)
    findings: list[Finding] = []
    for app in apps:
        candidates = matcher.candidates(app)
        if candidates:
            findings += matcher.findings(app, devices.get(app.device) or Device(id=app.device), candidates)
    findings.sort(key=finding_key)
    return findings


def finding_key(finding: Finding) -> tuple[str, ...]:
    """Sort key that makes reports stable: device, status, entry, then the app's identity."""
    app = finding.app
    return (
        finding.device, str(_STATUS_ORDER[finding.status]), finding.entry.id,
        app.source, app.id, app.user, app.path, app.version, app.name, app.publisher, app.sha256,
        app.extra_value("pid"), finding.matched_by, repr(app.aliases), repr(app.extra),
    )
