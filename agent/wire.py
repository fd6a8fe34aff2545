"""The typed forms of appban's JSON documents, for msgspec to decode straight into.

Imported only where a document is decoded (msgspec and typing_extensions cost ~8 ms to import,
more than a small check's own work). Each form is derived from its model record's fields, so a
field added to App or Device is read here too, and accepts exactly the plain shape appban
writes: every field its JSON type, defaults where the reader gives an absent field one. Anything
else fails to decode here, and the caller reads the document the lenient way instead, so its
errors and leniencies never depend on whether msgspec is installed.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Optional

import msgspec

from agent.match import CONTENT
from agent.model import App, CollectorError, Device


def _typed(record: type, overrides: dict[str, tuple[Any, Any]], order: tuple[str, ...] = ()) -> type:
    """Return a msgspec Struct with the fields of the dataclass `record` (its types and
    defaults), where `overrides` gives (type, default) for fields whose JSON shape differs from
    the record's (pairs written as an object, a Literal read leniently). `order` names the
    fields in the order the Struct keeps them (default: the record's; a document's key order is
    free either way)."""
    hints = typing.get_type_hints(record)
    by_name = {field.name: field for field in dataclasses.fields(record)}
    fields: list[tuple[Any, ...]] = []
    for field in (by_name[name] for name in order or by_name):
        kind, default = overrides.get(field.name, (hints[field.name], field.default))
        fields.append((field.name, kind) if default is dataclasses.MISSING else (field.name, kind, default))
    return msgspec.defstruct(f"Wire{record.__name__}", fields, gc=False)  # no cycles: never tracked


WireApp = _typed(App, {"extra": (dict[str, str], {})}, order=(*CONTENT, "device", "user"))
"""An app record as App.to_dict writes it (extra as an object). Its fields are a Content's
(agent.match.CONTENT), then device and user, so a record's `astuple` slices into its Content
without a lookup per field (agent/inventory/file.py: 100,000s of records per check)."""
WireDevice = _typed(Device, {"groups": (list[str], []), "attributes": (dict[str, str], {}),
                             "ownership": (Optional[str], None)})
"""A device record as Device.to_dict writes it; Device.from_dict reads its ownership word."""
WireError = _typed(CollectorError, {"collector": (str, ""), "message": (str, "")})
"""A collector error as an inventory document records it."""


class WireInventory(msgspec.Struct):
    """An `appban.inventory/v1` document."""

    format: str
    collected_at: Optional[str] = None
    devices: list[WireDevice] = []  # type: ignore[valid-type]
    apps: list[WireApp] = []  # type: ignore[valid-type]
    errors: list[WireError] = []  # type: ignore[valid-type]
    notes: list[str] = []
