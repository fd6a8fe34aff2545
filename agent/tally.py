"""Count and match apps as they stream in, keeping only what a report needs.

A check of a 10,000-phone MDM export reads a million app rows; holding one record per row cost
~300 MiB. The report needs much less: each device, how many apps it has, and the few apps that
some ban-list entry names. A Tally takes apps as they are read (an MDM export's rows, a
connector's pages, an inventory already loaded), asks for each distinct app's candidates once
(agent.match.Matcher.candidates), keeps the apps that have some and only counts the others.
Pure: no I/O, and the records it is given are not changed.

Inventories read from files count an app record found twice once, as
`agent.inventory.file.merge_inventories` does, so one phone in two overlapping exports is not
counted twice. For that a Tally numbers each distinct app content (every field but device and
user) and keeps, per device, the set of numbers seen with each user; once the stream moves on
to another device, that device's sets are packed into arrays (4 bytes per app instead of a
record). A device whose rows come back (an export not ordered by device, a second file) is
unpacked again; one that keeps coming back stays unpacked, so an export sorted by app costs
memory (a set per device) rather than time.

An export lists a device's rows together, so the CSV reader feeds a Tally in runs: `run(slot,
user)` when the device or user changes returns the set's own `add`, and each row is one call of
it with the app's number — no Python frame per row, which is what keeps a million-row check
near the cost of reading the CSV.
"""

from __future__ import annotations

from array import array

from agent.match import Content, Hit, app_of, content_of
from agent.model import App, CollectorError, Device, Inventory

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Callable, Iterable

_PACK_AFTER = 2
"""Times a device's rows may come back before its sets stay unpacked."""


class Slot:
    """One device id as a Tally sees it: its records (one per file that describes it), and its
    apps counted or, when duplicates are dropped, numbered per user."""

    __slots__ = ("id", "records", "count", "seen", "packed", "returns")

    def __init__(self, device_id: str) -> None:
        self.id = device_id
        self.records: list[Device] = []
        self.count = 0
        self.seen: dict[int, set[int]] | None = None
        """While the device is being read: the numbers of its apps, per user number."""
        self.packed: dict[int, array[int]] | None = None
        """Once the stream has moved on: the same numbers as arrays (4 bytes per app)."""
        self.returns = 0

    def apps(self) -> int:
        """How many apps were counted on this device (distinct ones, when duplicates are dropped)."""
        if self.seen is not None:
            return sum(len(numbers) for numbers in self.seen.values())
        if self.packed is not None:
            return sum(len(numbers) for numbers in self.packed.values())
        return self.count

    def opened(self) -> dict[int, set[int]]:
        """Return the per-user sets, unpacking them if the stream had moved on."""
        if self.seen is None:
            self.seen = {}
            if self.packed is not None:
                self.returns += 1
                self.seen = {user: set(numbers) for user, numbers in self.packed.items()}
                self.packed = None
        return self.seen

    def pack(self) -> None:
        """Pack the per-user sets into one array, unless the device keeps coming back."""
        if self.seen is not None and self.returns < _PACK_AFTER:
            self.packed = {user: array("I", numbers) for user, numbers in self.seen.items()}
            self.seen = None


class Tally:
    """The sink a streamed check feeds: see the module docstring.

    `candidates` returns the entries naming an app's content (agent.match.Content) before device
    scope (Matcher.candidates); with `unique`, an app record seen twice on one device counts once
    (the saved-files check). Rows with the same content are one distinct app, whichever device
    they are on.
    """

    def __init__(self, candidates: Callable[[Content], tuple[Hit, ...]], unique: bool) -> None:
        self._candidates = candidates
        self._unique = unique
        self._slots: dict[str, Slot] = {}
        self._described: list[Slot] = []
        self._numbers: dict[Content, int] = {}
        self._contents: list[Content] = []
        self._hits: list[tuple[Hit, ...]] = []
        self._named: set[int] = set()
        """Numbers of the apps that have candidates (a handful in a fleet's thousands)."""
        self._users: dict[str, int] = {}
        self._run: tuple[Slot, str, set[int]] | None = None
        self._kept: set[tuple[str, str, int]] = set()
        self.matched: list[tuple[App, tuple[Hit, ...]]] = []
        """The apps some entry names, each with its candidates, for scoping once devices are final."""
        self.errors: list[CollectorError] = []
        self.notes: list[str] = []

    def slot(self, device_id: str) -> Slot:
        """Return the slot of a device id (made on first use)."""
        slot = self._slots.get(device_id)
        if slot is None:
            slot = self._slots[device_id] = Slot(device_id)
        return slot

    def device(self, device: Device) -> Slot:
        """Record one description of a device (a file's), and return its slot."""
        slot = self.slot(device.id)
        if not slot.records:
            self._described.append(slot)
        slot.records.append(device)
        return slot

    def proto(self, app: App) -> int:
        """Return the number of an app's content (its device and user are not part of it)."""
        return self.number(content_of(app))

    def number(self, content: Content) -> int:
        """Return the number of a content, matching it the first time it is seen."""
        number = self._numbers.setdefault(content, len(self._contents))
        if number == len(self._contents):
            self._new(content)
        return number

    def _new(self, content: Content) -> None:
        """Keep a content just numbered, and its candidates."""
        hits = self._candidates(content)
        if hits:
            self._named.add(len(self._contents))
        self._contents.append(content)
        self._hits.append(hits)

    def run(self, slot: Slot, user: str) -> Callable[[int], object]:
        """Begin a run of rows of one device and user; return the function that counts one row,
        given its app's number (see the module docstring)."""
        previous = self._close()
        if not self._unique:
            return lambda number: self._each(slot, number, user)
        if previous is not None and previous is not slot:
            previous.pack()
        numbers = slot.opened().setdefault(self._user(user), set())
        self._run = (slot, user, numbers)
        return numbers.add

    def app(self, app: App) -> None:
        """Count one app record (a connector's, or one from an inventory read whole)."""
        slot = self.slot(app.device)
        if not self._unique:
            slot.count += 1  # every record counts, each matched with the matcher's own memo
            hits = self._candidates(content_of(app))
            if hits:
                self.matched.append((app, hits))
            return
        number = self.proto(app)
        numbers = slot.opened().setdefault(self._user(app.user), set())
        if number not in numbers:
            numbers.add(number)
            if number in self._named:
                self._keep(slot, app.user, number)

    def apps(self, apps: Iterable[App]) -> None:
        """Count app records (a connector's page, a collector's result)."""
        for app in apps:
            self.app(app)

    def rows(self, rows: Iterable[tuple[str, str, Content]]) -> None:
        """Count app records given as (device id, user, content), in any order, duplicates
        dropped (for a Tally made with `unique`): an `appban.inventory/v1` file's records, decoded
        without building an App for each (agent/inventory/file.py). Only the apps some entry
        names become records.

        Why not `run`: a saved inventory interleaves devices, which would end a run every row."""
        self._close()
        number_of, contents, named = self._numbers, self._contents, self._named
        places: dict[str | tuple[str, str], tuple[Slot, set[int]]] = {}
        for device, user, content in rows:
            found = number_of.setdefault(content, len(contents))  # `number`, without a call per row
            if found == len(contents):
                self._new(content)
            where = (device, user) if user else device  # most records have no user: no tuple for them
            place = places.get(where)
            if place is None:
                slot = self.slot(device)
                place = places[where] = (slot, slot.opened().setdefault(self._user(user), set()))
            numbers = place[1]
            if found not in numbers:
                numbers.add(found)
                if found in named:
                    self._keep(place[0], user, found)

    def inventory(self, inventory: Inventory) -> None:
        """Take an inventory read whole (an `appban.inventory/v1` file): its devices, apps, errors, notes."""
        for device in inventory.devices:
            self.device(device)
        self.apps(inventory.apps)
        self.errors += inventory.errors
        self.notes += inventory.notes

    def devices(self, merge: Callable[[list[Device]], Device]) -> list[Device]:
        """Return each described device once, in the order first described, its records merged."""
        self._close()
        return [merge(slot.records) for slot in self._described]

    def counted(self) -> tuple[tuple[str, int], ...]:
        """Return (device id, apps) for every device that has apps or a description."""
        self._close()
        return tuple((slot.id, slot.apps()) for slot in self._slots.values())

    def _user(self, user: str) -> int:
        number = self._users.get(user)
        if number is None:
            number = self._users[user] = len(self._users)
        return number

    def _each(self, slot: Slot, number: int, user: str) -> None:
        slot.count += 1
        if number in self._named:
            self.matched.append((app_of(self._contents[number], slot.id, user), self._hits[number]))

    def _close(self) -> Slot | None:
        """End the current run: keep the apps of it that some entry names; return its slot."""
        if self._run is None:
            return None
        slot, user, numbers = self._run
        self._run = None
        for number in numbers & self._named if self._named else ():
            self._keep(slot, user, number)
        return slot

    def _keep(self, slot: Slot, user: str, number: int) -> None:
        """Keep one named app on a device, once (a device's rows may come back in a later run)."""
        key = (slot.id, user, number)
        if key not in self._kept:
            self._kept.add(key)
            self.matched.append((app_of(self._contents[number], slot.id, user), self._hits[number]))
