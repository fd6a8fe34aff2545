"""Ban lists for the export tests: the Québec National Assembly case (staff bound, deputies only
advised) with names, hashes, package and bundle ids and domains, a helper to select from it, and
a DNS client (dnspython) for the resolvers the tests start on a loopback port."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timezone

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import yaml

from agent.banlist.parse import parse_banlist
from agent.export.common import Provenance, Selection, select
from agent.model import BanList

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
DIGEST = "ab" * 32
OTHER_DIGEST = "cd" * 32
PROVENANCE = Provenance(serial=42, signer="D1E2F3A4B5C6D7E8", source="https://lists.example.invalid/list.yaml",
                        publisher="Assemblée nationale", command="appban policy export --to hosts --group staff")

QUEBEC = {
    "format": "appban.banlist/v1", "serial": 42, "issued": "2026-11-01T00:00:00Z",
    "publisher": "Assemblée nationale",
    "entries": [
        {"id": "tiktok-assembly", "name": "TikTok", "vendor": "ByteDance",
         "applies_to": ["staff"], "advisory_for": ["deputies"], "exempt": ["security-research"],
         "effective": "2023-02-28T18:00:00-05:00",
         "match": {"android": ["com.zhiliaoapp.musically"], "ios": ["com.ss.iphone.ugc.Ame"],
                   "macos": ["com.zhiliaoapp.TikTok"], "windows": ["BytedancePte.Ltd.TikTok", "TikTok"],
                   "publishers": ["ByteDance*", "O=ByteDance Pte. Ltd., L=Singapore, C=SG"],
                   "executables": ["tiktok.exe"], "sha256": [DIGEST],
                   "domains": ["*.tiktokv.com", "tiktok.com", "*.tiktok.com", "log.byteoversea.com"]}},
        {"id": "future-app", "name": "Future", "effective": "2030-01-01T00:00:00Z",
         "match": {"android": ["com.future.app"], "sha256": [OTHER_DIGEST], "domains": ["future.example"]}},
    ],
}


def quebec(**changes: object) -> BanList:
    """Return the Québec list, with top-level keys replaced by `changes`."""
    return parse_banlist(yaml.safe_dump({**QUEBEC, **changes}, allow_unicode=True).encode())


def with_exceptions(*exceptions: dict) -> BanList:
    """Return the Québec list with these exceptions for tiktok-assembly (approver and expiry filled in)."""
    filled = [{"entry": "tiktok-assembly", "approved_by": "Secretary General", "reason": "account management",
               "expires": "2027-06-30T00:00:00Z", **e} for e in exceptions]
    return quebec(exceptions=filled)


def chosen(banlist: BanList, *groups: str, device: str = "", only_block: bool = False,
           enforce: bool = False) -> Selection:
    return select(banlist, groups, NOW, PROVENANCE, device=device, only_block=only_block, enforce=enforce)


def free_dns_port() -> int:
    """Return a port free for both UDP and TCP on 127.0.0.1 a moment ago."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def ask(port: int, name: str, deadline: float = 30.0) -> dns.message.Message:
    """Query A for `name`, retrying while the resolver starts (generous deadline for loaded CI)."""
    query = dns.message.make_query(name, dns.rdatatype.A)
    stop = time.monotonic() + deadline
    while True:
        try:
            return dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
        except (dns.exception.Timeout, ConnectionRefusedError, OSError):
            if time.monotonic() > stop:
                raise
            time.sleep(0.2)


def addresses(answer: dns.message.Message) -> list[str]:
    return sorted(r.address for rrset in answer.answer if rrset.rdtype == dns.rdatatype.A for r in rrset)
