"""The per-source facts table (agent.sources) agrees with the code that carries each fact out,
and with the collector registry: a source cannot be known to one module and forgotten by another."""

from __future__ import annotations

from agent.enforce.uninstall import PINNERS, UNINSTALLERS
from agent.inventory import collector_names
from agent.inventory.owned import FILE_LISTS
from agent.model import MATCH_KINDS
from agent.sources import SOURCES, facts
from agent.versions import COMPARE


def test_every_collector_has_a_row_and_every_row_a_collector() -> None:
    assert set(SOURCES) == set(collector_names())


def test_match_kinds_are_lists_the_ban_list_format_has() -> None:
    kinds = [f.match_kind for f in SOURCES.values() if f.match_kind and not f.mdm]
    assert set(kinds) <= set(MATCH_KINDS) and len(kinds) == len(set(kinds))
    # an MDM connector's apps share their platform's list, and are never acted on from this host
    assert {f.match_kind for f in SOURCES.values() if f.mdm and f.match_kind} <= set(kinds)
    assert not any(f.remover or f.gateway or f.quarantine for f in SOURCES.values() if f.mdm)


def test_each_remover_has_an_argv_builder_except_the_phone() -> None:
    removable = {name for name, f in SOURCES.items() if f.remover and not f.gateway}
    assert removable == set(UNINSTALLERS)


def test_each_pin_and_file_list_has_its_implementation() -> None:
    assert {f.pin for f in SOURCES.values() if f.pin} == set(PINNERS)
    assert {name for name, f in SOURCES.items() if f.file_list} == set(FILE_LISTS)


def test_rehearsal_only_with_a_remover_and_unknown_sources_are_never_acted_on() -> None:
    assert all(f.remover for f in SOURCES.values() if f.rehearsal or f.pin)
    unknown = facts("something-newer")
    assert not (unknown.remover or unknown.quarantine or unknown.gateway or unknown.match_kind)


def test_every_version_scheme_has_a_comparison() -> None:
    assert {f.version_scheme for f in SOURCES.values()} <= set(COMPARE)
