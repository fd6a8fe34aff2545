"""Where inventories come from besides push and pull: the seam for "a source that yields
inventories".

A source is anything with a `name` and an `inventories()` method yielding `agent.model.Inventory`
records (devices and their apps). Saved files (`appban fleet import`) are the first; the MDM API
connectors (Android Management API, Intune Graph, Jamf) are meant to plug in here unchanged and be
run on a schedule by `fleet serve`, each inventory then ingested exactly like an imported file
(`agent.fleet.store.Store.ingest_source`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence

from agent.inventory.file import inventory_chunks
from agent.log import log_event
from agent.model import Inventory

if TYPE_CHECKING:
    from agent.inventory.api import Connector

logger = logging.getLogger(__name__)


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
            yield from inventory_chunks(path)  # an MDM export a few hundred whole devices at a time


@dataclass(frozen=True)
class ConnectorSource:
    """An MDM API connector (agent/inventory/connectors.py `make_connector`) as a source: one
    inventory per page, so a 20,000-phone enterprise is stored page by page in bounded memory. A
    device the connector could not read (an AMAPI policy without app reports) is logged and left
    out, never stored as a compliant phone; a failed page ends the read with what came before kept."""

    name: str
    connector: Connector

    def inventories(self) -> Iterator[Inventory]:
        for page in self.connector.pages():
            unread = {e.device for e in page.errors if e.device}
            for error in page.errors:
                log_event(logger, logging.WARNING, "fleet.mdm_error", connector=self.name,
                          device=error.device or None, error=error.message)
            yield Inventory(devices=tuple(d for d in page.devices if d.id not in unread),
                            apps=tuple(a for a in page.apps if a.device not in unread), notes=tuple(page.notes))
