"""appban: keep banned apps off government devices."""

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


def _import_deferring(module: str, dependency: str) -> None:
    """Import the standard module `module`, whose `import dependency` at its top is there for
    a function a command seldom calls: while `module` loads, that import gets a stand-in, so
    `dependency` (and what it imports) is loaded only if the function runs.

    Why: these are a good share of every command's start-up (issue 14), for nothing a run
    normally does. The stand-in is in sys.modules only while `module` loads: any other import
    of `dependency` gets the real module."""
    if module in sys.modules or dependency in sys.modules:
        return
    stand_in = sys.modules[dependency] = _ImportedOnUse(dependency)
    try:
        __import__(module)
    finally:
        if sys.modules.get(dependency) is stand_in:
            del sys.modules[dependency]


for _module, _dependency in (
    ("dataclasses", "inspect"),  # for the signature of a dataclass with no docstring (appban's all have one)
    ("urllib.parse", "ipaddress"),  # for a URL with a [bracketed] host; pathlib imports urllib.parse
    ("logging", "traceback"),  # for a record with a traceback or a stack
):
    _import_deferring(_module, _dependency)
