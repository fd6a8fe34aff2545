"""agent.records builds frozen records without compiling five of their six methods; these tests
hold it to what `dataclasses.dataclass(frozen=True)` makes of the same class body."""

from __future__ import annotations

import copy
import dataclasses
import sys
from typing import Any, Callable

import pytest

from agent import records


def _pair(body: Callable[[], dict[str, Any]], annotations: dict[str, str], name: str = "Rec") -> tuple[type, type]:
    """Return (standard, ours): the same class body (made by `body`) made by each decorator."""
    made = []
    for decorate in (lambda c: dataclasses.dataclass(c, frozen=True), records.dataclass(frozen=True)):
        namespace = {"__doc__": "A record.", "__module__": __name__, "__qualname__": name,
                     "__annotations__": dict(annotations), **body()}
        made.append(decorate(type(name, (), namespace)))
    return made[0], made[1]


def _built_here(cls: type) -> bool:
    """True for a class agent.records made (its __setattr__ is the module's closure)."""
    code = getattr(cls.__dict__.get("__setattr__"), "__code__", None)
    return code is not None and code.co_filename == records.__file__


SHAPES = [
    (dict, {}, (), {}),
    (dict, {"a": "int"}, (1,), {}),
    (lambda: {"b": "x"}, {"a": "int", "b": "str"}, (1,), {"b": "y"}),
    (lambda: {"c": dataclasses.field(default_factory=list), "d": dataclasses.field(default=3, metadata={"k": 1})},
     {"a": "str", "c": "list[int]", "d": "int"}, ("n",), {"c": [1, 2]}),
    (lambda: {"t": ()}, {"t": "tuple[str, ...]"}, (), {"t": ("p", "q")}),
]


@pytest.mark.parametrize(("body", "annotations", "args", "kwargs"), SHAPES)
def test_a_plain_frozen_record_behaves_as_the_standard_one(body, annotations, args, kwargs) -> None:
    standard, ours = _pair(body, annotations)
    assert _built_here(ours) and not _built_here(standard)
    assert [(f.name, f.type, f.default, f.default_factory, dict(f.metadata)) for f in dataclasses.fields(ours)] \
        == [(f.name, f.type, f.default, f.default_factory, dict(f.metadata)) for f in dataclasses.fields(standard)]
    assert ours.__match_args__ == standard.__match_args__
    assert repr(ours.__dataclass_params__) == repr(standard.__dataclass_params__)  # every option, as recorded
    assert ours.__init__.__annotations__ == standard.__init__.__annotations__
    assert ours.__init__.__code__.co_filename == "<string>"  # agent.schema's test for "the generated __init__"
    s, o = standard(*args, **kwargs), ours(*args, **kwargs)
    assert ours.__init__.__annotations__ == standard.__init__.__annotations__  # the compiled one now
    assert ours.__init__.__code__.co_filename == "<string>"
    assert repr(o) == repr(s)
    assert dataclasses.asdict(o) == dataclasses.asdict(s)
    assert o == ours(*args, **kwargs) and o != s and s != o
    assert (o == 1) is False and o.__eq__(1) is NotImplemented
    if not any(isinstance(v, list) for v in dataclasses.astuple(o)):
        assert hash(o) == hash(s) == hash(dataclasses.astuple(s))
    for name in ("a", "other"):
        with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot assign to field '{name}'"):
            setattr(o, name, 1)
        with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot delete field '{name}'"):
            delattr(o, name)
    assert copy.copy(o) == o and copy.deepcopy(o) == o
    if annotations:
        first = next(iter(annotations))
        assert dataclasses.replace(o, **{first: s.__dict__[first]}) == o


def test_defaults_and_factories_are_per_instance_as_in_the_standard_one() -> None:
    standard, ours = _pair(lambda: {"c": dataclasses.field(default_factory=list)}, {"c": "list[int]"})
    one, two = ours(), ours()
    assert one.c == [] and one.c is not two.c
    given = [1]
    assert ours(given).c is given


def test_argument_errors_read_as_the_standard_ones() -> None:
    standard, ours = _pair(lambda: {"b": 2}, {"a": "int", "b": "int"})
    for args, kwargs in (((), {}), ((1, 2, 3), {}), ((1,), {"z": 1}), ((1,), {"a": 1})):
        with pytest.raises(TypeError) as expected:
            standard(*args, **kwargs)
        with pytest.raises(TypeError) as got:
            ours(*args, **kwargs)
        assert str(got.value) == str(expected.value)


def test_post_init_runs_after_the_fields_are_set() -> None:
    seen = []
    standard, ours = _pair(lambda: {"__post_init__": lambda self: seen.append(self.a)}, {"a": "int"})
    standard(1), ours(2)
    assert seen == [1, 2]


def test_equal_values_in_different_record_classes_are_not_equal() -> None:
    _, first = _pair(dict, {"a": "int"}, "First")
    _, second = _pair(dict, {"a": "int"}, "Second")
    assert first(1) != second(1) and first(1) == first(1)


def test_a_subclass_may_add_attributes_that_are_not_fields() -> None:
    _, ours = _pair(dict, {"a": "int"})
    sub = type("Sub", (ours,), {})
    instance = sub(1)
    instance.note = "ok"  # as with the standard decorator: only fields are frozen in a subclass
    assert instance.note == "ok"
    with pytest.raises(dataclasses.FrozenInstanceError):
        instance.a = 2


def test_a_frozen_dataclass_may_subclass_a_record() -> None:
    _, ours = _pair(dict, {"a": "int"})
    sub = dataclasses.dataclass(frozen=True)(type("Sub", (ours,), {"__annotations__": {"b": "int"}, "b": 0}))
    assert sub(1, 2) == sub(1, 2) and repr(sub(1)) == "Sub(a=1, b=0)"


def test_methods_are_compiled_on_first_call_and_then_stay() -> None:
    _, ours = _pair(lambda: {"b": 2}, {"a": "int", "b": "int"})
    stubs = {name: ours.__dict__[name] for name in ("__init__", "__eq__", "__hash__")}
    one, two = ours(1), ours(1)
    assert one == two and hash(one) == hash(two) == hash((1, 2))
    compiled = {name: ours.__dict__[name] for name in stubs}
    assert all(compiled[name] is not stubs[name] for name in stubs)
    assert all(compiled[name].__qualname__ == f"Rec.{name}" for name in stubs)
    ours(3), hash(two), one == two
    assert {name: ours.__dict__[name] for name in stubs} == compiled


def test_a_subclass_made_first_compiles_the_records_methods() -> None:
    _, ours = _pair(dict, {"a": "int"})
    sub = type("Sub", (ours,), {})
    assert sub(1) == sub(1) and hash(sub(1)) == hash((1,)) and ours(1) != sub(1)
    assert "__init__" not in sub.__dict__ and "__eq__" in ours.__dict__


def test_a_recursive_repr_shows_an_ellipsis() -> None:
    standard, ours = _pair(dict, {"a": "list"})
    s, o = standard([]), ours([])
    s.a.append(s), o.a.append(o)
    assert repr(o) == repr(s) == "Rec(a=[...])"


@pytest.mark.parametrize(("body", "annotations", "options"), [
    ({"a": dataclasses.field(default=1, repr=False)}, {"a": "int"}, {}),
    ({"a": dataclasses.field(default=1, compare=False)}, {"a": "int"}, {}),
    ({"a": dataclasses.field(default=1, init=False)}, {"a": "int"}, {}),
    ({}, {"a": "int", "k": "ClassVar[int]"}, {}),
    ({"__repr__": lambda self: "mine"}, {"a": "int"}, {}),
    ({}, {"a": "int"}, {"order": True}),
    ({}, {"a": "int"}, {"slots": True}),
])
def test_anything_unusual_is_left_to_the_standard_decorator(body, annotations, options) -> None:
    namespace = {"__doc__": "A record.", "__annotations__": annotations, **body}
    cls = records.dataclass(frozen=True, **options)(type("Odd", (), namespace))
    assert dataclasses.is_dataclass(cls) and not _built_here(cls)


def test_a_mutable_dataclass_is_the_standard_one() -> None:
    cls = records.dataclass(type("Mut", (), {"__doc__": "x", "__annotations__": {"a": "int"}}))
    instance = cls(1)
    instance.a = 2
    assert instance == cls(2) and cls.__hash__ is None and not _built_here(cls)


def test_records_built_in_bulk_are_the_records_built_one_by_one() -> None:
    """`model.build_records` (instances made by `map`) gives what `build_record` gives, with
    every field named (the dictionary taken as it is) or only some (defaults merged), and the
    records stay frozen."""
    from agent.model import App, build_record, build_records

    full = [dict(App(source="dpkg", id=f"p{i}", aliases=(f"p{i}:amd64",)).__dict__) for i in range(3)]
    partial = [{"source": "dpkg", "id": "a"}, {"source": "dpkg", "id": "b"}]
    for values in (full, partial, []):
        bulk = build_records(App, [dict(v) for v in values])
        assert bulk == [build_record(App, dict(v)) for v in values]
        assert all(type(app) is App and app.device == "local" for app in bulk)
    with pytest.raises(dataclasses.FrozenInstanceError):
        build_records(App, full)[0].id = "x"


def test_a_record_made_without_arguments_takes_its_defaults_without_compiling() -> None:
    """A config section made with no arguments gets its defaults (factories called afresh,
    in field order, then __post_init__) from the stand-in, which stays in place."""
    seen = []
    body = lambda: {"a": 1, "b": dataclasses.field(default_factory=list), "c": "x",  # noqa: E731
                    "__post_init__": lambda self: seen.append(dict(vars(self)))}
    standard, ours = _pair(body, {"a": "int", "b": "list[int]", "c": "str"})
    stub = ours.__dict__["__init__"]
    one, two = ours(), ours()
    assert ours.__dict__["__init__"] is stub
    assert repr(one) == repr(standard()) and one == two and one.b is not two.b
    assert seen[0] == seen[-1] == {"a": 1, "b": [], "c": "x"} and list(seen[0]) == ["a", "b", "c"]
    assert ours(2) == ours(a=2) != one and ours.__dict__["__init__"] is not stub  # compiled now


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="agent.records collects fields itself on 3.11 only")
@pytest.mark.parametrize(("body", "annotations", "args", "kwargs"), SHAPES)
def test_fields_are_collected_as_the_standard_module_collects_them(body, annotations, args, kwargs) -> None:
    """records._collect_fields gives a plain record what `dataclasses.dataclass(init=False,
    repr=False, eq=False)` gives it: the same Fields (every attribute, in order), class
    attributes and __match_args__."""
    made = []
    for collect in (lambda c: dataclasses.dataclass(c, init=False, repr=False, eq=False), records._collect_fields):
        cls = type("Rec", (), {"__doc__": "A record.", "__module__": __name__,
                                "__annotations__": dict(annotations), **body()})
        collect(cls)
        made.append(cls)
    standard, ours = made
    assert [repr(f) for f in dataclasses.fields(ours)] == [repr(f) for f in dataclasses.fields(standard)]
    assert [f._field_type for f in ours.__dataclass_fields__.values()] == [
        f._field_type for f in standard.__dataclass_fields__.values()]
    assert set(vars(ours)) == set(vars(standard)) - {"__dataclass_params__"}
    assert {k: v for k, v in vars(ours).items() if k in annotations} == {
        k: v for k, v in vars(standard).items() if k in annotations}
    assert ours.__match_args__ == standard.__match_args__


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="agent.records collects fields itself on 3.11 only")
@pytest.mark.parametrize(("namespace", "error"), [
    ({"__annotations__": {"a": "list[int]"}, "a": []}, ValueError),
    ({"__annotations__": {"a": "int"}, "b": dataclasses.field(default=1)}, TypeError),
])
def test_a_field_the_standard_module_refuses_is_refused_the_same_way(namespace, error) -> None:
    messages = []
    for collect in (lambda c: dataclasses.dataclass(c, init=False, repr=False, eq=False), records._collect_fields):
        with pytest.raises(error) as raised:
            collect(type("Rec", (), {"__doc__": "A record.", **namespace}))
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
