"""Bulk loads pause the cyclic GC; inside a one-pass command what they built stays frozen, and
nothing stays frozen for a caller that goes on."""

from __future__ import annotations

import gc

from agent.gcpause import one_pass, paused_gc


def _load() -> list[dict[str, str]]:
    with paused_gc():
        assert not gc.isenabled()
        return [{"id": str(i)} for i in range(1000)]


def test_a_load_outside_a_command_leaves_nothing_frozen() -> None:
    assert gc.isenabled()
    _load()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_one_pass_command_keeps_its_loads_frozen_until_the_next_load_outside() -> None:
    @one_pass
    def command() -> list[dict[str, str]]:
        return _load()

    records = command()
    assert gc.get_freeze_count() >= len(records)  # the records are out of every collection
    assert gc.isenabled()
    _load()  # a caller that goes on gets them back first
    assert gc.get_freeze_count() == 0


def test_garbage_cycles_frozen_by_a_command_are_collected_afterwards() -> None:
    class Node:
        pass

    @one_pass
    def command() -> None:
        node = Node()
        node.self = node  # a cycle, garbage once the command returns
        _load()

    command()
    _load()
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o) is Node]


def test_what_someone_else_froze_stays_as_it_is() -> None:
    @one_pass
    def command() -> None:
        _load()

    gc.freeze()  # a pre-fork server's own frozen set
    try:
        before = gc.get_freeze_count()
        command()
        _load()
        assert gc.get_freeze_count() == before
    finally:
        gc.unfreeze()
