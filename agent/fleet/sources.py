"""Where inventories come from besides push and pull: the seam for "a source that yields
inventories".

A source is anything with a `name` and an `inventories()` method yielding `agent.model.Inventory`
records (devices and their apps). Saved files (`appban fleet import`) are the first; the MDM API
connectors (Android Management API, Intune Graph, Jamf) are meant to plug in here unchanged and be
run on a schedule by `fleet serve`, each inventory then ingested exactly like an imported file
(`agent.fleet.store.Store.ingest_source`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

from agent.inventory.file import load_inventory_file
from agent.model import Inventory


class InventorySource(Protocol):
    """A producer of inventories: I/O at the edge, plain records out."""

    name: str

    def inventories(self) -> Iterator[Inventory]:
        """Yield inventories; raise a UserError subclass (one line) for an unusable input."""
        ...


@dataclass(frozen=True)
class FileSource:
    """Saved inventories (`appban inventory --format json`) and MDM exports (Intune AppInvRawData
    CSV or ZIP, appban's generic CSV), read with the agent's own parsers."""

    paths: Sequence[str]
    name: str = "import"

    def inventories(self) -> Iterator[Inventory]:
        for path in self.paths:
            yield load_inventory_file(path)
