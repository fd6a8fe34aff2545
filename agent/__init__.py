"""appban: keep banned apps off government devices."""

import re
import sys
import types

__version__ = "0.1.0"


class _ImportedOnUse(types.ModuleType):
    """A stand-in for a module, given to another module's `import` while that one loads: the
    real module is imported when the stand-in is first used (an attribute is read)."""

    def __getattr__(self, attribute: str) -> object:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        __import__(self.__name__)
        return getattr(sys.modules[self.__name__], attribute)


class _CompiledOnUse:
    """A pattern a standard module compiles as it loads, compiled (by `re`, into its cache as
    usual) when it is first used: a method or attribute is read, or it is given to `re`. A
    module-level name that holds it is then given the real pattern (dataclasses matches its
    pattern for every field of every record a command defines)."""

    __slots__ = ("_source", "_flags", "_pattern", "holders")

    def __init__(self, source: str | bytes, flags: int = 0) -> None:
        self._source, self._flags, self._pattern = source, flags, None
        self.holders: list[tuple[dict[str, object], str]] = []

    def compiled(self) -> re.Pattern:
        """Return the real pattern, compiling it the first time."""
        if self._pattern is None:
            self._pattern = re.compile(self._source, self._flags)
            for namespace, name in self.holders:
                if namespace.get(name) is self:
                    namespace[name] = self._pattern
        return self._pattern

    def __getattr__(self, attribute: str) -> object:
        return getattr(self.compiled(), attribute)

    def __repr__(self) -> str:
        return repr(self.compiled())


class _CalledOnUse(types.ModuleType):
    """A stand-in for a module another module takes functions from (`from module import f`) as
    it loads: each function it takes imports the real module (with its own stand-ins, as
    `_DEFERRED` lists them) when it is first called, and calls the real function."""

    def __getattr__(self, attribute: str) -> object:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        module = self.__name__

        def call(*args: object, **kwargs: object) -> object:
            _import_deferring(module, *_DEFERRED.get(module, ()))
            return getattr(sys.modules[module], attribute)(*args, **kwargs)

        call.__name__ = call.__qualname__ = attribute
        return call


def _real(pattern: object) -> object:
    return pattern.compiled() if type(pattern) is _CompiledOnUse else pattern


class _PatternsOnUse(types.ModuleType):
    """`re` as a standard module sees it while it loads: what it compiles then is compiled on
    first use (_CompiledOnUse); after that, everything is `re`'s own, and `re`'s functions also
    take the patterns made while loading.

    Why: the standard regex compiler is Python, and a dozen patterns the modules a check imports
    compile at import, for things a check never does (str.format and $-template log styles,
    string.Template, plural forms of translations, the standard dataclass decorator's string
    annotations, locale's number formats), cost ~9 M instructions of every command (issue 14)."""

    _TAKING_A_PATTERN = frozenset(("compile", "match", "fullmatch", "search", "sub", "subn", "split",
                                   "findall", "finditer"))

    def __init__(self) -> None:
        super().__init__("re", re.__doc__)
        self.loading = True

    def __getattr__(self, attribute: str) -> object:
        if attribute == "compile" and self.loading:
            return _CompiledOnUse
        real = getattr(re, attribute)
        if attribute in self._TAKING_A_PATTERN:
            return lambda pattern, *args, **kwargs: real(_real(pattern), *args, **kwargs)
        return real


def _import_deferring(module: str, *dependencies: str) -> None:
    """Import the standard module `module`, whose imports of `dependencies` at its top are there
    for functions a command seldom calls: while `module` loads, those imports get stand-ins, so
    each dependency (and what it imports) is loaded only if such a function runs; `re` stands
    for the patterns `module` compiles as it loads (_PatternsOnUse).

    Why: these are a good share of every command's start-up (issue 14), for nothing a run
    normally does. The stand-ins are in sys.modules only while `module` loads: any other import
    of a dependency gets the real module."""
    if module in sys.modules:
        return
    stand_ins = {name: _PatternsOnUse() if name == "re" else
                 _CalledOnUse(name) if name in _CALLED_ON_USE else _ImportedOnUse(name)
                 for name in dependencies if name == "re" or name not in sys.modules}
    before = set(sys.modules)
    sys.modules.update(stand_ins)
    try:
        __import__(module)
    finally:
        for name, stand_in in stand_ins.items():
            if isinstance(stand_in, _PatternsOnUse):
                stand_in.loading = False
                sys.modules["re"] = re
            elif sys.modules.get(name) is stand_in:
                del sys.modules[name]
    for loaded in set(sys.modules) - before:
        namespace = vars(sys.modules[loaded])
        for name, value in namespace.items():
            if type(value) is _CompiledOnUse:
                value.holders.append((namespace, name))


_DEFERRED = {
    # inspect: for the signature of a dataclass with no docstring (appban's all have one);
    # copy: for asdict, astuple and deepcopy; re: for string annotations of the standard decorator
    "dataclasses": ("inspect", "copy", "re"),
    "urllib.parse": ("ipaddress", "re"),  # a URL with a [bracketed] host
    "logging": ("traceback", "re"),  # a record with a traceback or a stack; logging imports string
    # argparse imports gettext, which imports locale at argparse's first message: a translation's
    # plural forms and locale's number formats
    "gettext": ("re",),
    "locale": ("re",),
    "pathlib": ("urllib.parse",),  # quote_from_bytes, for Path.as_uri
}
"""Each standard module every command imports, and the dependencies its top imports for what a
command seldom does: agent imports each with stand-ins for those (urllib.parse only when used)."""
_CALLED_ON_USE = frozenset(("urllib.parse",))
"""Dependencies taken as `from module import f` (a _CalledOnUse stand-in); the others as `import module`."""

for _module, _dependencies in _DEFERRED.items():
    if _module not in _CALLED_ON_USE:
        _import_deferring(_module, *_dependencies)
