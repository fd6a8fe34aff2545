"""The typed forms of appban's JSON documents, for msgspec to decode straight into.

Imported only where a document is decoded (msgspec and typing_extensions cost ~8 ms to import,
more than a small check's own work). Each form accepts exactly the plain shape appban writes:
every field its JSON type, defaults where the reader gives an absent field one. Anything else
fails to decode here, and the caller reads the document the lenient way instead, so its errors
and leniencies never depend on whether msgspec is installed.
"""

from __future__ import annotations

from typing import Optional

import msgspec


class WireApp(msgspec.Struct, gc=False):
    """An `appban.inventory/v1` app record (App.to_dict's shape)."""

    source: str
    id: str
    name: str = ""
    version: str = ""
    publisher: str = ""
    path: str = ""
    user: str = ""
    device: str = ""
    aliases: tuple[str, ...] = ()
    sha256: str = ""
    extra: dict[str, str] = {}


class WireDevice(msgspec.Struct, gc=False):
    """An `appban.inventory/v1` device record (Device.to_dict's shape)."""

    id: str
    hostname: str = ""
    kind: str = ""
    os: str = ""
    groups: list[str] = []
    attributes: dict[str, str] = {}
    ownership: Optional[str] = None
    """Any other word than corporate or personal is `unknown`, as Device.from_dict reads it."""


class WireError(msgspec.Struct, gc=False):
    """A collector error as an inventory document records it."""

    collector: str = ""
    message: str = ""
    device: str = ""


class WireInventory(msgspec.Struct):
    """An `appban.inventory/v1` document."""

    format: str
    collected_at: Optional[str] = None
    devices: list[WireDevice] = []
    apps: list[WireApp] = []
    errors: list[WireError] = []
    notes: list[str] = []
