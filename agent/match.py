"""Match apps against a ban list: a pure function of (apps, devices, ban list, time).

The list is compiled once into hash indexes (identifiers per platform, exact names, executable
names, hashes) and glob indexes keyed by a literal fragment of each pattern, so the cost grows with
apps + rules rather than apps x rules, and a fleet-sized inventory is matched in well under a second.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import operator
import os
import re
from collections import defaultdict
from agent.clock import datetime

from agent.model import (
    App, BanException, BanList, Device, Entry, Finding, aware, build_record,
)
from agent.records import dataclass
from agent.sources import MATCH_KINDS_OF_SOURCES, SOURCES, facts
from agent.versions import VersionSpec, parse_spec

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Iterable, Iterator, Mapping, Sequence

    from agent.model import Status

_WILDCARD = re.compile(r"[*?\[]")
_LITERAL_RUNS = re.compile(r"\[[^\]]*\]|[*?]")
_STATUS_ORDER = {"violation": 0, "advisory": 1, "upcoming": 2, "exempt": 3}

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
        self.active = False
        """Whether any pattern was added (most lists have no publisher globs at all)."""

    def add(self, pattern: str, index: int) -> None:
        self.active = True
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

    def find(self, text: str, memo: dict[str, tuple[Hit, ...]]) -> Sequence[Hit]:
        """Return every hit whose pattern matches the (already case-folded) text.

        Why two steps: a fleet's texts are mostly names no pattern shares a prefix with, which
        two dict lookups settle; only a text that reaches globs to try is looked up in `memo`
        (the caller's, per distinct text: a few publishers cover most apps of a fleet), so
        100,000 unique package names do not grow it."""
        exact = self.exact.get(text, ()) if self.exact else ()
        prefixed = self.by_prefix.get(text[:3])
        if prefixed is None and not self.by_trigram and not self.loose:
            return exact
        found = memo.get(text)
        if found is None:
            found = tuple(self._globbed(text, prefixed or ()))
            if len(memo) < MEMO_LIMIT:
                memo[text] = found
        return (*exact, *found) if exact else found

    def _globbed(self, text: str, prefixed: Iterable[Glob]) -> Iterator[Hit]:
        for glob in prefixed:
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
    by_source: Mapping[str, tuple[Mapping[str, list[Hit]], bool]]
    """App source -> (the identifier table of its match kind, whether its display name is an
    identifier too), for the sources whose kind some entry lists: one lookup per app."""


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
    by_source = {source: (ids[kind], kind == "windows") for source, known in SOURCES.items()
                 if (kind := known.match_kind) in ids}
    return CompiledBanList(
        banlist=banlist, ids=ids, names=names, publishers=publishers, executables=executables,
        sha256=hashes, versions=versions, exceptions={k: tuple(v) for k, v in by_entry.items()},
        by_source=by_source,
    )


Content = tuple[str, str, str, str, str, str, tuple[str, ...], str, tuple[tuple[str, str], ...]]
"""What the matcher reads of an app record: every field but where it is (device, user), in
CONTENT order. Two records with the same content get the same candidates, and a streamed check
numbers each distinct content once (agent/tally.py) without building an App for it."""
CONTENT = ("source", "id", "name", "version", "publisher", "path", "aliases", "sha256", "extra")
"""The App fields of a Content, in order (a unit test holds them to App's fields)."""
content_of = operator.attrgetter(*CONTENT)
"""The Content of an App record."""
_APP_FIELDS = tuple(f.name for f in dataclasses.fields(App))


def app_of(content: Content, device: str, user: str) -> App:
    """Return the App record of a content on a device and user: the inverse of content_of."""
    fields = dict(zip(CONTENT, content), device=device, user=user)
    return build_record(App, {name: fields[name] for name in _APP_FIELDS})


def _hits(content: Content, compiled: CompiledBanList, memos: tuple[dict[str, tuple[Hit, ...]], ...]) -> list[Hit]:
    """Return every (entry, reason) pair that names an app of this content, before scope and
    versions. `memos` holds the glob results per distinct name and publisher (GlobIndex.find).

    Why on a Content rather than an App: a 100,000-app inventory file is matched without
    building 100,000 records, only those of the few apps some entry names."""
    source, ident, name, _, publisher, path, aliases, sha256, extra = content
    hits: list[Hit] = []
    former = programs = None  # the facts a folded launcher leaves on its owner (inventory/dedupe.py),
    for fact, value in extra:  # each the first of its key, as App.extra_value reads it
        if fact == "former_names" and former is None:
            former = value
        elif fact == "launcher_programs" and programs is None:
            programs = value
    known = compiled.by_source.get(source)
    if known is not None:
        table, by_name = known
        hits += table.get(ident.casefold(), ())
        for alias in aliases:
            hits += table.get(alias.casefold(), ())
        if by_name and name:  # Add/Remove Programs entries are known by display name
            hits += table.get(name.casefold(), ())
    names = compiled.names
    if names.active:
        if name:
            hits += names.find(name.casefold(), memos[0])
        for text in former.split(",") if former else ():
            if text:
                hits += names.find(text.casefold(), memos[0])
    if publisher and compiled.publishers.active:
        hits += compiled.publishers.find(publisher.casefold(), memos[1])
    if compiled.executables:
        if path:
            hits += compiled.executables.get(os.path.basename(path).casefold(), ())
        for program in programs.split(",") if programs else ():
            if program:
                hits += compiled.executables.get(program.casefold(), ())
        if source == "process":
            hits += compiled.executables.get(ident.casefold(), ())
    if sha256 and compiled.sha256:
        hits += compiled.sha256.get(sha256.casefold(), ())
    return hits


MEMO_LIMIT = 1 << 16
"""Distinct contents whose candidates a Matcher remembers, and texts per glob memo: bounds, so
no inventory can grow a memo without limit (past them, results are simply computed again)."""


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

    Why in two steps: which entries name an app (`candidates`) depends on its content alone,
    while whether they apply (`findings`) depends on its device's final groups — which for a
    merged MDM export are known only once every file is read. A streamed check asks for the
    candidates of each row as it arrives, keeps the few apps that have some, and scopes them at
    the end.
    """

    def __init__(self, compiled: CompiledBanList, now: datetime) -> None:
        self.compiled = compiled
        self.now = aware(now)
        self._seen: set[str] = set()
        self._memo: dict[Content, tuple[Hit, ...]] = {}
        self._texts: tuple[dict[str, tuple[Hit, ...]], ...] = ({}, {})

    def candidates(self, content: Content) -> tuple[Hit, ...]:
        """Given an app's content, return the entries that name it and whose `versions` include
        its version, each once with its lowest reason — before any device scope (empty for
        almost every app of a fleet). Computed afresh: for a caller that numbers each distinct
        content once (a Tally dropping duplicates)."""
        hits = _hits(content, self.compiled, self._texts)
        if not hits:
            return ()
        matched: dict[int, str] = {}
        for index, label in hits:
            if index not in matched or label < matched[index]:
                matched[index] = label
        versions = self.compiled.versions
        return tuple(
            (index, label) for index, label in matched.items()
            if (spec := versions.get(index)) is None or spec.contains(content[3], facts(content[0]).version_scheme)
        )

    def remembered(self, content: Content) -> tuple[Hit, ...]:
        """`candidates`, remembered per content from the second time its id is seen.

        Why: fleets and MDM pages repeat the same app on thousands of devices, interleaved
        device by device; an id seen once costs one string in a set, so a machine's 100,000
        unique packages build no memo at all."""
        found = self._memo.get(content)
        if found is None:
            found = self.candidates(content)
            ident = content[1]
            if ident not in self._seen:
                self._seen.add(ident)
            elif len(self._memo) < MEMO_LIMIT:
                self._memo[content] = found
        return found

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
        candidates = matcher.remembered(content_of(app))
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
