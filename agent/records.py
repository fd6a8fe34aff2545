"""`dataclass`, as `dataclasses.dataclass` makes it, with less start-up cost for frozen records.

Why: the standard decorator writes six methods of a frozen class as source text and compiles
each with `exec` when the class is defined; the ~40 classes every `appban check` defines
(config, model, matcher, runner) cost ~170 compiles, a tenth of the command's time. For a
frozen class with the standard options this module builds the same class — the same fields,
`__dataclass_fields__`, `__match_args__`, parameters and behaviour — and compiles nothing up
front: `__init__`, `__eq__` and `__hash__` are compiled (as the standard decorator writes them)
the first time each is called, which for most records of a command is never (an `__init__`
called with no arguments, a config section taking its defaults, stores them without compiling
anything); `__repr__`,
`__setattr__` and `__delattr__` are closures over the field names doing what the generated ones
do (`Class(a=1, b='x')` with "..." for a recursive repr; FrozenInstanceError on assignment).

Anything else (other options, a base that is a dataclass, fields with `init`, `repr`, `compare`,
`hash` or `kw_only` set, ClassVar/InitVar/KW_ONLY annotations, methods the class defines
itself, no docstring) goes to the standard decorator unchanged, so an unusual class is never
built differently. The one visible difference: before a record's first instance made with
arguments, `inspect.signature` of its class shows `(*args, **kwargs)`.
"""

from __future__ import annotations

import abc
import dataclasses
import reprlib
import sys
import types

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Any, Callable

_PLAIN = {"init": True, "repr": True, "compare": True, "hash": None, "kw_only": dataclasses.MISSING}
"""The Field options this module builds for; any other value goes to the standard decorator."""
_OWN_METHODS = ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__", "__slots__")
_SPECIAL_TYPES = ("ClassVar", "InitVar", "KW_ONLY")


def _frozen_params() -> Any:
    """Return the standard decorator's record of a frozen class with default options
    (`__dataclass_params__`), which every class built here carries: a frozen dataclass
    subclassing one of them checks that its base is frozen.

    It is taken from a class the decorator processes without generated methods, with the
    options then set as `@dataclass(frozen=True)` records them: decorating a class that way
    would compile six methods when this module is imported, on every command's start-up."""
    class Options:
        """A class whose only use is its `__dataclass_params__`."""

    params = dataclasses.dataclass(Options, init=False, repr=False, eq=False).__dataclass_params__
    for option in ("init", "repr", "eq", "frozen"):
        setattr(params, option, True)
    return params


_PARAMS = _frozen_params()


def dataclass(cls: type | None = None, /, *, frozen: bool = False, **options: Any) -> Any:
    """Given a class (as `@dataclass(frozen=True)` does), return it as a dataclass: built here
    when it is a plain frozen record, by `dataclasses.dataclass` otherwise."""
    def wrap(cls: type) -> type:
        if frozen and not options and _plain(cls):
            return _frozen_record(cls)
        return dataclasses.dataclass(cls, frozen=frozen, **options)  # type: ignore[call-overload]
    return wrap if cls is None else wrap(cls)


def _plain(cls: type) -> bool:
    """True for a class this module builds exactly as the standard decorator would."""
    own = cls.__dict__
    if not own.get("__doc__") or any(name in own for name in _OWN_METHODS):
        return False
    if any(hasattr(base, "__dataclass_fields__") for base in cls.__mro__[1:]):
        return False
    for name, annotation in own.get("__annotations__", {}).items():
        if name == "self" or name.startswith("__appban") or any(word in str(annotation) for word in _SPECIAL_TYPES):
            return False
        value = own.get(name)
        if isinstance(value, dataclasses.Field) and any(getattr(value, k) != v for k, v in _PLAIN.items()):
            return False
    return True


def _frozen_record(cls: type) -> type:
    if sys.version_info[:2] == (3, 11):
        _collect_fields(cls)
    else:
        cls = dataclasses.dataclass(cls, init=False, repr=False, eq=False)
    cls.__dataclass_params__ = _PARAMS  # type: ignore[attr-defined]
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    methods: dict[str, Callable[..., Any]] = {
        "__init__": _pending(cls, "__init__", lambda: _init(cls, fields), _defaults(cls, fields)),
        "__repr__": _repr(names),
        "__eq__": _pending(cls, "__eq__", lambda: _eq(names)),
        "__hash__": _pending(cls, "__hash__", lambda: _hash(names)),
        "__setattr__": _setattr(cls, names), "__delattr__": _delattr(cls, names),
    }
    for name, method in methods.items():
        method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)
    cls.__init__.__annotations__ = {**{f.name: f.type for f in fields}, "return": None}
    return cls


def _collect_fields(cls: type) -> None:
    """Give a plain record (`_plain`) what `dataclasses.dataclass(cls, init=False, repr=False,
    eq=False)` gives it on Python 3.11 (`_process_class`): a Field per annotation, in order, in
    `__dataclass_fields__`, each default as the class attribute, `__match_args__`, the same
    errors for a mutable default or a Field without an annotation.

    Why: the standard module asks of every field whether its annotation names ClassVar, InitVar
    or KW_ONLY (three pattern matches and module lookups each), which `_plain` has ruled out:
    ~300 k instructions a record, ~10 M of a check's ~35 records. Other versions of Python (whose
    `_process_class` differs: 3.13 adds `__replace__`) go through the standard module."""
    annotations = cls.__dict__.get("__annotations__", {})
    fields: dict[str, dataclasses.Field] = {}
    for name, annotation in annotations.items():
        default = getattr(cls, name, dataclasses.MISSING)
        if isinstance(default, dataclasses.Field):
            field = default
        else:
            if isinstance(default, types.MemberDescriptorType):  # a __slots__ entry: no default
                default = dataclasses.MISSING
            field = dataclasses.field(default=default)
        field.name, field.type = name, annotation
        field._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
        if field.kw_only is dataclasses.MISSING:
            field.kw_only = False
        if field.default.__class__.__hash__ is None:
            raise ValueError(f"mutable default {type(field.default)} for field {name} is not allowed: "
                             "use default_factory")
        fields[name] = field
    for name, field in fields.items():
        if isinstance(getattr(cls, name, None), dataclasses.Field):
            if field.default is dataclasses.MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, field.default)
    for name, value in cls.__dict__.items():
        if isinstance(value, dataclasses.Field) and name not in annotations:
            raise TypeError(f"{name!r} is a field but has no type annotation")
    cls.__dataclass_fields__ = fields  # type: ignore[attr-defined]
    if "__match_args__" not in cls.__dict__:
        cls.__match_args__ = tuple(name for name, field in fields.items() if field.init)  # type: ignore[attr-defined]
    abc.update_abstractmethods(cls)


def _stub() -> types.CodeType:
    """Return the code of what a record's `__init__`, `__eq__` and `__hash__` are until first
    called (an `__init__` called with no arguments runs `__appban_defaults` instead, when set):
    compiled from a string once, as the standard decorator's methods are (agent.schema takes
    `<string>` for "the generated __init__").

    Why `exec` and not the `compile` builtin: the builtin's first call in a process sets up
    Python's AST node types (it accepts an AST as its source), ~1.5 ms of every start-up."""
    namespace: dict[str, Any] = {}
    exec("def pending(self, *args, **kwargs):\n"  # noqa: S102
         "    if args or kwargs or __appban_defaults is None:\n"
         "        return __appban_compile()(self, *args, **kwargs)\n"
         "    __appban_defaults(self)\n", {}, namespace)
    return namespace["pending"].__code__


_STUB = _stub()


def _pending(cls: type, name: str, build: Callable[[], Callable[..., Any]],
             defaults: Callable[[Any], None] | None = None) -> Callable[..., Any]:
    """Return the method `name` of `cls` as a stand-in: its first call builds the real method
    (`build`, which compiles it), puts it on the class in its place and runs it — except a call
    without arguments when `defaults` is given, which `defaults` answers, leaving the stand-in.
    Most records a command defines are never compared or hashed, and a third are never made
    through __init__ (schema and build_record fill them directly), so most of them never pay for
    compiling."""
    def compiled() -> Callable[..., Any]:
        method = build()
        method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)
        return method

    return types.FunctionType(
        _STUB, {"__builtins__": __builtins__, "__appban_compile": compiled, "__appban_defaults": defaults}, name)


def _defaults(cls: type, fields: tuple[dataclasses.Field, ...]) -> Callable[[Any], None] | None:
    """Return what the compiled `__init__` does when called with no arguments — store each
    field's default in order, calling factories afresh, then run `__post_init__` — or None when
    a field has no default (then the compiled one runs, and raises the standard TypeError).

    Why: a record made with no arguments is a section of the config taking its defaults; a
    check without a config file makes a dozen, and compiling each one's `__init__` for that
    cost more than all the rest of making them."""
    plan = []
    for f in fields:
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            return None
        plan.append((f.name, f.default, f.default_factory))
    post_init = hasattr(cls, "__post_init__")
    missing = dataclasses.MISSING

    def defaults(self: Any) -> None:
        self.__dict__.update({name: value if make is missing else make() for name, value, make in plan})
        if post_init:
            self.__post_init__()
    return defaults


def _compiled(source: str, bound: dict[str, Any]) -> Callable[..., Any]:
    """Compile `source` (one `__create_fn__` defining and returning the method) and call it with
    the values it binds."""
    namespace: dict[str, Any] = {}
    exec(source, {"__builtins__": __builtins__}, namespace)  # noqa: S102 - what dataclasses does; no input reaches it
    return namespace["__create_fn__"](**bound)


_INIT = """\
def __create_fn__(__appban_factory, {bound}):
    def __init__(self, {parameters}):
        self.__dict__.update({values})
{post_init}
    return __init__
"""


def _init(cls: type, fields: tuple[dataclasses.Field, ...]) -> Callable[..., None]:
    """Compile the `__init__` the standard decorator writes for a frozen class, with the same
    parameters (so the same errors for missing or unexpected arguments): defaults bound once,
    factories called when no value is given, then `__post_init__` if the class has one.

    The fields are stored with one update of the new instance's `__dict__` where the standard
    one calls object.__setattr__ per field: the same result for a class without slots or
    descriptors (which go to the standard decorator), less source to compile, a faster call."""
    bound: dict[str, Any] = {"__appban_factory": _HAS_FACTORY}
    parameters, values = [], []
    for f in fields:
        value = f.name
        if f.default is not dataclasses.MISSING:
            bound[f"__appban_default_{f.name}"] = f.default
            parameters.append(f"{f.name}=__appban_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            bound[f"__appban_make_{f.name}"] = f.default_factory
            parameters.append(f"{f.name}=__appban_factory")
            value = f"__appban_make_{f.name}() if {f.name} is __appban_factory else {f.name}"
        else:
            parameters.append(f.name)
        values.append(f"{f.name}={value}")
    post_init = "        self.__post_init__()" if hasattr(cls, "__post_init__") else ""
    source = _INIT.format(bound=", ".join(name for name in bound if name != "__appban_factory"),
                          parameters=", ".join(parameters), values=", ".join(values), post_init=post_init)
    init = _compiled(source, bound)
    init.__annotations__ = {**{f.name: f.type for f in fields}, "return": None}
    return init


_HAS_FACTORY = object()
"""The default of a parameter whose field has a default_factory: "no value given"."""


def _eq(names: tuple[str, ...]) -> Callable[[Any, Any], Any]:
    """Compile `__eq__` as the standard decorator writes it: the tuples of fields compared, for
    instances of exactly the same class."""
    mine, theirs = (f"({''.join(f'{who}.{name},' for name in names)})" for who in ("self", "other"))
    return _compiled("def __create_fn__():\n    def __eq__(self, other):\n"
                     f"        if other.__class__ is self.__class__:\n            return {mine} == {theirs}\n"
                     "        return NotImplemented\n    return __eq__\n", {})


def _hash(names: tuple[str, ...]) -> Callable[[Any], int]:
    """Compile `__hash__` as the standard decorator writes it: the hash of the tuple of fields."""
    fields = "".join(f"self.{name}," for name in names)
    return _compiled(f"def __create_fn__():\n    def __hash__(self):\n        return hash(({fields}))\n"
                     "    return __hash__\n", {})


def _repr(names: tuple[str, ...]) -> Callable[[Any], str]:
    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({inner})"
    return __repr__


def _setattr(cls: type, names: tuple[str, ...]) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)
    return __setattr__


def _delattr(cls: type, names: tuple[str, ...]) -> Callable[[Any, str], None]:
    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)
    return __delattr__
