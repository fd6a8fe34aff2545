"""The MDM connectors as collectors, and one way to build a connector from config.

The connector modules (and the HTTP stack they use) are imported only when one runs: a plain
`appban check` of this machine must not pay for them at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Iterator

from agent.config import MdmConfig
from agent.inventory.base import Collected, Context
from agent.inventory.preconditions import mdm_configured

if TYPE_CHECKING:
    from agent.inventory.api import Connector

CONNECTORS: dict[str, str] = {
    "amapi": "agent.inventory.amapi:AmapiConnector",
    "intune": "agent.inventory.intune:IntuneConnector",
    "jamf": "agent.inventory.jamf:JamfConnector",
}
"""Source name → the class that reads that MDM (its config block is `mdm.<name>`)."""


def make_connector(name: str, mdm: MdmConfig) -> Connector:
    """Given a connector name and the `mdm:` config, return the connector, ready to yield pages.

    Raise ValueError if that MDM is not configured (what a scheduler such as the fleet server
    calls for each configured MDM)."""
    settings = getattr(mdm, name)
    if settings is None:
        raise ValueError(f"mdm.{name} is not configured")
    module, _, cls = CONNECTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(settings)


class ConnectorCollector:
    """A connector as a collector: off until its `mdm:` block is configured; reads no local files,
    so it only runs on the live system (never against a mounted image)."""

    name = ""
    live_only = True

    def unavailable(self, ctx: Context) -> str | None:
        return mdm_configured(self.name)(ctx)

    def collect(self, ctx: Context) -> Collected:
        from agent.inventory.api import drain

        return drain(make_connector(self.name, ctx.config.mdm))

    def pages(self, ctx: Context) -> Iterator[Collected]:
        """Yield what the connector reads, page by page (a streamed check matches each page as it
        arrives instead of holding the whole enterprise)."""
        return make_connector(self.name, ctx.config.mdm).pages()


class AmapiCollector(ConnectorCollector):
    name = "amapi"


class IntuneCollector(ConnectorCollector):
    name = "intune"


class JamfCollector(ConnectorCollector):
    name = "jamf"
