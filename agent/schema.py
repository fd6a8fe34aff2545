"""Build frozen dataclasses from parsed YAML/JSON, rejecting anything the dataclass does not declare.

Config files and ban lists are written by people and shipped to thousands of machines, so a typo
must be an error that names the key, never a silently ignored option. One type-driven builder
serves both, so the two documents cannot drift in how strictly they are read.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
import types
from agent.clock import date, datetime, timezone

from agent.records import dataclass

TYPE_CHECKING = False  # typing is imported by the functions that read hints: ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, TypeVar

    T = TypeVar("T")


class SchemaError(ValueError):
    """A document that does not fit its schema; `path` names the offending key."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        self.path = path
        self.problem = message
        super().__init__(f"key '{format_path(path)}': {message}" if path else message)


def format_path(path: tuple[str | int, ...]) -> str:
    """Return a path such as `entries[2].match.android` for messages."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def parse_timestamp(value: Any) -> datetime:
    """Return an aware datetime from YAML's date/datetime or an ISO 8601 string (naive means UTC)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"expected an ISO 8601 timestamp, got {value!r}") from None
    else:
        raise ValueError(f"expected a timestamp, got {type_name(value)}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def type_name(value: Any) -> str:
    """Name a YAML value's type the way a person writing YAML thinks of it."""
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "a list", dict: "a mapping", type(None): "nothing",
    }.get(type(value), type(value).__name__)


def build(cls: type[T], data: Any, path: tuple[str | int, ...] = ()) -> T:
    """Given a dataclass type and a parsed mapping, return the instance.

    Raise SchemaError naming the key for unknown keys, missing required keys, wrong types, and
    values that fail a field's `pattern` (regex) or `check` (callable raising ValueError) metadata.
    """
    if not isinstance(data, dict):
        raise SchemaError(path, f"expected a mapping, got {type_name(data)}")
    plan = _plan(cls)
    if plan.direct and plan.required <= data.keys():
        built = _build_direct(cls, plan, data, path)
        if built is not None:
            return built
    return _build_in_order(cls, plan, data, path)


def _build_direct(cls: type[T], plan: _Plan, data: dict[str, Any], path: tuple[str | int, ...]) -> T | None:
    """The fast path: convert the keys present, in the document's order, start from the
    defaults and fill the instance's `__dict__` as the dataclass's __init__ would. Return None
    on any problem, so `_build_in_order` reports the same error it always did."""
    values = plan.defaults.copy()
    strings, lists, by_name = plan.strings, plan.lists, plan.by_name
    try:
        for key, raw in data.items():
            if key in strings and type(raw) is str:
                values[key] = raw
            elif key in lists and type(raw) is list and all(map(_is_str, raw)):
                check = lists[key]
                values[key] = tuple(raw) if check is None else check(tuple(raw))
            else:
                step = by_name.get(key)
                if step is None:
                    return None
                values[key] = step(raw, path)  # the path only names an error, on which this path gives up
    except ValueError:  # a SchemaError, or a `check` refusing a list
        return None
    for name, factory in plan.factories:
        if name not in data:
            values[name] = factory()
    instance = object.__new__(cls)
    instance.__dict__.update(values)
    return instance


def _build_in_order(cls: type[T], plan: _Plan, data: dict[str, Any], path: tuple[str | int, ...]) -> T:
    """Build field by field in declaration order, so the first error is always the same one."""
    for key in data:
        if key not in plan.by_name:
            raise SchemaError(path + (str(key),), "unknown key" + did_you_mean(str(key), plan.by_name))
    values: dict[str, Any] = {}
    for name, step, required in plan.steps:
        if name in data:
            values[name] = step(data[name], path + (name,))
        elif required:
            raise SchemaError(path + (name,), "required key is missing")
    return cls(**values)


if TYPE_CHECKING:
    Step = Callable[[Any, tuple[str | int, ...]], Any]


@dataclass(frozen=True)  # agent.records: the standard decorator would compile six methods at import
class _Plan:
    """How to build one dataclass, worked out once per class: each init field's converter (type,
    pattern and check), default and factory. A 10,000-entry ban list has ~100,000 values;
    resolving each one's type and metadata again per value made building cost 9x parsing the
    JSON itself."""

    steps: tuple[tuple[str, Step, bool], ...]
    """(name, converter, required) in declaration order."""
    by_name: dict[str, Step]
    required: frozenset[str]
    defaults: dict[str, Any]
    factories: tuple[tuple[str, Callable[[], Any]], ...]
    strings: frozenset[str]
    """Fields that take any string as it is (no pattern, no check): most of a list's values."""
    lists: dict[str, Callable[[tuple[str, ...]], Any] | None]
    """Fields that take a list of strings as a tuple, with no pattern: their `check`, or None."""
    direct: bool
    """True when instances may be made by filling `__dict__` (no __post_init__, no slots, every
    field set by __init__, and that __init__ the one dataclass generated rather than the class's
    own), which is all that __init__ would do."""


@functools.cache
def _plan(cls: type) -> _Plan:
    hints, fields = _described(cls)
    missing = dataclasses.MISSING
    required = {n for n, f in fields.items() if f.default is missing and f.default_factory is missing}
    steps = tuple((name, _step(fld, hints[name]), name in required) for name, fld in fields.items())
    init = getattr(cls.__init__, "__code__", None)
    direct = (not hasattr(cls, "__post_init__") and not hasattr(cls, "__slots__")
              and all(f.init for f in dataclasses.fields(cls))
              and init is not None and init.co_filename == "<string>")  # the __init__ dataclass wrote
    return _Plan(
        steps=steps, by_name={name: step for name, step, _ in steps}, required=frozenset(required),
        defaults={n: f.default for n, f in fields.items() if f.default is not missing},
        factories=tuple((n, f.default_factory) for n, f in fields.items() if f.default_factory is not missing),
        strings=frozenset(n for n, f in fields.items() if hints[n] is str and not {"pattern", "check"} & f.metadata.keys()),
        lists={n: f.metadata.get("check") for n, f in fields.items()
               if hints[n] == tuple[str, ...] and "pattern" not in f.metadata},
        direct=direct,
    )


def _step(fld: dataclasses.Field, hint: Any) -> Step:
    """Return the function that turns one raw value of this field into its final value: the
    conversion, then the field's `pattern` and `check` metadata."""
    convert_one = _converter(hint)
    pattern = fld.metadata.get("pattern")
    check = fld.metadata.get("check")
    if pattern is None and check is None:
        return convert_one
    fullmatch = re.compile(pattern).fullmatch if pattern is not None else None

    def step(raw: Any, path: tuple[str | int, ...]) -> Any:
        value = convert_one(raw, path)
        if fullmatch is not None:
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, str) and not fullmatch(item):
                    raise SchemaError(path, f"{item!r} does not match {pattern}")
        if check is not None and value is not None:
            try:
                value = check(value)
            except ValueError as exc:
                raise SchemaError(path, str(exc)) from None
        return value

    return step


_is_str = str.__instancecheck__
"""isinstance(x, str) without a Python-level generator: the lists of a 10,000-entry ban list
are checked item by item."""


def _converter(hint: Any) -> Step:
    """Return a converter for `hint`, with a fast path for the common shapes (strings, lists of
    strings, nested dataclasses); anything else, and every error, goes through `convert`, so the
    messages are the same either way."""
    import typing

    if hint is str:
        return lambda raw, path: raw if type(raw) is str else convert(hint, raw, path)
    if typing.get_origin(hint) is tuple and typing.get_args(hint)[0] is str:
        def strings(raw: Any, path: tuple[str | int, ...]) -> Any:
            if type(raw) is list and all(map(_is_str, raw)):
                return tuple(raw)
            return convert(hint, raw, path)
        return strings
    if dataclasses.is_dataclass(hint):
        return lambda raw, path: build(hint, raw, path)
    if typing.get_origin(hint) is tuple and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        inner = typing.get_args(hint)[0]

        def records(raw: Any, path: tuple[str | int, ...]) -> Any:
            if type(raw) is list:
                return tuple(build(inner, item, path + (i,)) for i, item in enumerate(raw))
            return convert(hint, raw, path)
        return records
    return lambda raw, path: convert(hint, raw, path)


@functools.cache
def _described(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """Return a dataclass's resolved type hints and init fields, once per class: resolving string
    annotations compiles each one, which would otherwise dominate reading a long ban list."""
    return type_hints(cls), {f.name: f for f in dataclasses.fields(cls) if f.init}


def type_hints(cls: type) -> dict[str, Any]:
    """Return `typing.get_type_hints(cls)`, evaluating each string annotation with `eval` where
    that gives the same result: plain classes and aliases such as `tuple[str, ...]`, `str | None`
    or `Literal["a"]`. Anything else (a quoted name inside an annotation, `Annotated`, `None`)
    is left to get_type_hints itself.

    Why: get_type_hints wraps each string in a ForwardRef, whose `compile` call sets up Python's
    AST types on its first use in a process, ~1.5 ms of every command's start-up (issue 14)."""
    import typing

    hints: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        module = vars(sys.modules[base.__module__]) if base.__module__ in sys.modules else {}
        for name, value in base.__dict__.get("__annotations__", {}).items():
            if isinstance(value, str):
                # the namespaces as get_type_hints passes them: the module's names before the class's
                value = eval(value, dict(vars(base)), module)  # noqa: S307 - the code base's own annotations
            if not _plain_hint(value):
                return typing.get_type_hints(cls)
            hints[name] = value
    return hints


def _plain_hint(hint: Any) -> bool:
    """True for a hint that get_type_hints returns as it is: a class, or a generic alias, union
    or Literal built of those (a string inside a builtin alias is a forward reference it resolves)."""
    import typing

    if isinstance(hint, type) and not isinstance(hint, types.GenericAlias):
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return True
    if isinstance(hint, types.GenericAlias) or origin in (typing.Union, types.UnionType):
        return all(arg is Ellipsis or _plain_hint(arg) for arg in typing.get_args(hint))
    return False


def convert(hint: Any, raw: Any, path: tuple[str | int, ...]) -> Any:
    """Convert one raw value to the type `hint` describes, or raise SchemaError."""
    import typing

    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return convert(inner, raw, path)
    if origin is typing.Literal:
        if isinstance(raw, bool) and all(isinstance(a, str) for a in args):
            return _yaml_switch(raw, args, path)
        if raw not in args:
            raise SchemaError(path, f"expected one of {', '.join(map(str, args))}, got {raw!r}")
        return raw
    if origin is tuple:
        if not isinstance(raw, list):
            raise SchemaError(path, f"expected a list, got {type_name(raw)}")
        return tuple(convert(args[0], item, path + (i,)) for i, item in enumerate(raw))
    if origin is dict:
        if not isinstance(raw, dict):
            raise SchemaError(path, f"expected a mapping, got {type_name(raw)}")
        return {str(k): convert(args[1], v, path + (str(k),)) for k, v in raw.items()}
    if dataclasses.is_dataclass(hint):
        return build(hint, raw, path)
    return _scalar(hint, raw, path)


def _yaml_switch(raw: bool, choices: tuple[str, ...], path: tuple[str | int, ...]) -> str:
    """YAML 1.1 reads unquoted `off`/`no` as false and `on`/`yes` as true: where a choice is
    spelled `off` (or `on`) that is what the writer meant; anything else is refused with a hint
    rather than with "got False"."""
    word = "on" if raw else "off"
    if word in choices:
        return word
    raise SchemaError(path, f"expected one of {', '.join(choices)}, got the YAML boolean {str(raw).lower()} "
                            f"(unquoted on/off/yes/no read as true/false: quote the value, e.g. \"{choices[0]}\")")


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return " (did you mean 'x'?)" for the closest candidate (difflib), or "" when none is close.
    difflib is imported here, on a mistake: a check that has none does not pay for it."""
    import difflib

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _scalar(hint: Any, raw: Any, path: tuple[str | int, ...]) -> Any:
    if hint is datetime:
        try:
            return parse_timestamp(raw)
        except ValueError as exc:
            raise SchemaError(path, str(exc)) from None
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        raise SchemaError(path, f"expected true or false, got {type_name(raw)}")
    if hint is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        raise SchemaError(path, f"expected an integer, got {type_name(raw)}")
    if hint is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        raise SchemaError(path, f"expected a number, got {type_name(raw)}")
    if hint is str:
        if isinstance(raw, str):
            return raw
        raise SchemaError(path, f"expected a string, got {type_name(raw)}")
    import typing

    if hint is typing.Any:
        return raw
    raise TypeError(f"schema cannot convert to {hint!r}")  # a programming error, not bad input
