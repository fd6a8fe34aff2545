"""DNS names in a ban list's `match.domains`: validated and normalised once, when the list is read.

A name goes into resolver configs, hosts files and response-policy zones on thousands of machines,
so anything that is not a plain DNS name is refused with a message that says why: an IP address
(blocking is by name; addresses change), a bare top-level domain or a lone `*` (that would block
a whole registry), labels longer than 63 octets or names longer than 253, characters DNS names do
not have. International names are accepted in either form and kept as A-labels (punycode), the
form every resolver and hosts file reads; the `idna` package (IDNA 2008 with UTS #46 mapping, a
dependency of `requests` already) does the conversion, since Python's own codec is IDNA 2003.

Two forms: `example.com` is that name; `*.example.com` is example.com and every name below it
(what v2fly's `domain:`, AdGuard's `||example.com^`, dnsmasq's `address=/example.com/` and
unbound's `local-zone` mean).
"""

from __future__ import annotations

import re

WILDCARD = "*."
MAX_NAME = 253
MAX_LABEL = 63
_LDH = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
"""Compiled by `re` on first use: a check of the bundled list (its Python twin) checks no domain."""


def normalise_domain(text: str) -> str:
    """Given one `domains` item, return it lower-cased in A-label form (`*.` kept, no final dot).

    Raise ValueError saying what is wrong with it.
    """
    raw = text.strip()
    wildcard = raw.startswith(WILDCARD)
    name = raw[len(WILDCARD):] if wildcard else raw
    if name.endswith("."):
        name = name[:-1]
    if not name or name == "*":
        raise ValueError(f"{text!r} is not a domain name (a lone '*' would block every name)")
    if "*" in name:
        raise ValueError(f"{text!r}: '*' is only allowed as a whole first label ('*.example.com')")
    _refuse_address(name, text)
    ascii_name = _to_ascii(name, text)
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise ValueError(f"{text!r} is a bare top-level domain (name the service's own domains)")
    if len(ascii_name) > MAX_NAME:
        raise ValueError(f"{text!r} is longer than {MAX_NAME} characters")
    for label in labels:
        if len(label) > MAX_LABEL:
            raise ValueError(f"{text!r}: label {label[:20]!r}... is longer than {MAX_LABEL} characters")
        if not re.match(_LDH, label):
            raise ValueError(f"{text!r}: label {label!r} is not letters, digits and inner hyphens")
    if labels[-1].isdigit():
        raise ValueError(f"{text!r}: the top-level label cannot be all digits")
    return (WILDCARD if wildcard else "") + ascii_name


_IPV4_CHARACTERS = frozenset("0123456789.")


def _refuse_address(name: str, text: str) -> None:
    """Raise ValueError for an IP address. Only a text with a colon (IPv6) or made of nothing
    but ASCII digits and dots (IPv4) can be one: other names, which is nearly all of them, are
    passed without importing ipaddress (a check's start-up, issue 14)."""
    address = name.strip("[]")
    if ":" not in address and not _IPV4_CHARACTERS.issuperset(address):
        return
    import ipaddress

    try:
        ipaddress.ip_address(address)
    except ValueError:
        return
    raise ValueError(f"{text!r} is an IP address, not a domain name (block names; addresses change)")


def _to_ascii(name: str, text: str) -> str:
    """Return the name in lower-case A-labels; plain ASCII names skip the IDNA codec."""
    if name.isascii():  # idna (~5 ms to import) loads only for a name that needs it
        lowered = name.lower()
        for label in lowered.split("."):
            if label.startswith("xn--"):
                import idna

                try:
                    idna.decode(label)
                except idna.IDNAError as exc:
                    raise ValueError(f"{text!r}: label {label!r} is not valid punycode ({exc})") from None
        return lowered
    import idna

    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"{text!r} is not a valid international domain name ({exc})") from None


def normalise_domains(values: tuple[str, ...]) -> tuple[str, ...]:
    """Return every item normalised (see `normalise_domain`), duplicates dropped, order kept."""
    return tuple(dict.fromkeys(normalise_domain(v) for v in values))


def split_domain(item: str) -> tuple[str, bool]:
    """Given a normalised item, return (name, True when it covers the names below it too)."""
    if item.startswith(WILDCARD):
        return item[len(WILDCARD):], True
    return item, False
