"""`appban policy export`: the ban list as the file each enforcement engine reads.

One module per engine, each a pure function from a Selection (agent.export.common) to an Export;
this tuple is the one registry the command line and the docs list.
"""

from __future__ import annotations

from agent.export import (
    adguard, amapi, applocker, dnsmasq, dnsmasq_nftset, fapolicyd, hosts, intune, mobileconfig, nftables, rpz,
    santa, unbound,
)
from agent.export.common import Renderer

EXPORTERS: tuple[tuple[str, Renderer], ...] = (
    (fapolicyd.KIND, fapolicyd.render),
    (santa.KIND, santa.render),
    (applocker.KIND, applocker.render),
    (amapi.KIND, amapi.render),
    (intune.IOS, intune.render_ios),
    (intune.ANDROID, intune.render_android),
    (mobileconfig.KIND, mobileconfig.render),
    (hosts.KIND, hosts.render),
    (dnsmasq.KIND, dnsmasq.render),
    (unbound.KIND, unbound.render),
    (rpz.KIND, rpz.render),
    (adguard.KIND, adguard.render),
    (nftables.KIND, nftables.render),
    (dnsmasq_nftset.KIND, dnsmasq_nftset.render),
)
KINDS: tuple[str, ...] = tuple(kind for kind, _ in EXPORTERS)


def renderer(kind: str) -> Renderer:
    """Return the renderer of one export kind. Raise KeyError for an unknown kind."""
    return dict(EXPORTERS)[kind]
