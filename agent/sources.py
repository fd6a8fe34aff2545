"""What appban knows about each inventory source, in one pure table.

Which `match` list names a source's apps, which program removes them (and how a removal is
rehearsed and then pinned), whether its database lists each package's files, whether its apps are
quarantined or live on phones behind this gateway: the matcher, the planner, the uninstaller and
the exec guard all read these facts here, as psutil keeps its per-OS facts in one place, so a new
source (or a new fact about one) is one row, and no module can know a source that another forgot.
The code that carries a fact out (an argv builder, a file lister, a pin writer) stays in the
module of that tool, keyed by source; tests/unit/test_sources.py checks that the two agree.
"""

from __future__ import annotations

from agent.records import dataclass


@dataclass(frozen=True)
class SourceFacts:
    """The facts about one source; the defaults describe a source appban only reports on."""

    match_kind: str = ""
    """The entry `match` list holding identifiers of this source's `id` ("": apps are matched by
    names, publishers, executables and hashes only)."""
    remover: str = ""
    """The program that uninstalls its apps; its presence on the host is what makes uninstall
    possible ("": appban never uninstalls them)."""
    rehearsal: str = ""
    """The remover's flag for a run that changes nothing but fails as the real one would. Why: a
    failed `dpkg --purge` still leaves the package selected for purge, which a later apt run
    would carry out; rehearsing first leaves a refused removal's system exactly as it was."""
    pin: str = ""
    """How a removed app is kept from coming back ("apt", "dnf", "flatpak"; "": not at all, so
    every scan re-checks and removes it again)."""
    file_list: bool = False
    """Its package database lists the files each package installed (agent.inventory.owned)."""
    quarantine: bool = False
    """Its app is one bundle or file with no package manager to remove it (a macOS .app, an
    AppImage): it is moved into the restorable quarantine."""
    gateway: bool = False
    """Its apps live on phones attached to this gateway, so findings carry the phone's device id."""
    version_scheme: str = "generic"
    """How an entry's `versions` constraint compares its versions (agent.versions): "dpkg" and
    "rpm" as those tools do, "generic" segment-wise for free-form versions."""
    mdm: bool = False
    """Its apps were read from an MDM's API (agent/inventory/connectors.py): they are blocked
    through that MDM (agent/enforce/mdm.py), never by a program on this host. Such a source
    shares the platform's `match` list (an AMAPI app is an Android package)."""


SOURCES: dict[str, SourceFacts] = {
    "dpkg": SourceFacts(match_kind="deb", remover="dpkg", rehearsal="--dry-run", pin="apt", file_list=True,
                        version_scheme="dpkg"),
    "rpm": SourceFacts(match_kind="rpm", remover="rpm", rehearsal="--test", pin="dnf", file_list=True,
                       version_scheme="rpm"),
    "pacman": SourceFacts(file_list=True),
    "apk": SourceFacts(file_list=True),
    "flatpak": SourceFacts(match_kind="flatpak", remover="flatpak", pin="flatpak"),
    "snap": SourceFacts(match_kind="snap", remover="snap"),
    "appimage": SourceFacts(quarantine=True),
    "desktop": SourceFacts(),
    "process": SourceFacts(),
    "windows": SourceFacts(match_kind="windows", remover="powershell.exe"),
    "macos": SourceFacts(match_kind="macos", quarantine=True),
    "android": SourceFacts(match_kind="android", remover="adb", gateway=True),
    "ios": SourceFacts(match_kind="ios", gateway=True),
    "amapi": SourceFacts(match_kind="android", mdm=True),
    "intune": SourceFacts(mdm=True),  # Intune's discovered apps have no package or bundle id: names only
    "jamf": SourceFacts(match_kind="ios", mdm=True),
}
"""source name (as collectors set `App.source`) → its facts."""

UNKNOWN = SourceFacts()


def facts(source: str) -> SourceFacts:
    """Return the facts of `source`; a source not in the table (a saved inventory from a newer
    agent) is reported on and never acted on."""
    return SOURCES.get(source, UNKNOWN)


MATCH_KINDS_OF_SOURCES: frozenset[str] = frozenset(f.match_kind for f in SOURCES.values() if f.match_kind)
"""The `match` lists that hold source identifiers (the others are names, publishers, …)."""
