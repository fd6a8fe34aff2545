"""Pause the cyclic garbage collector while a bulk load builds many records.

Why: building 100,000 records allocates far past the collector's thresholds, so it runs again
and again over objects that are all still alive (a third of a 100,000-package dpkg parse went to
it). Records hold no reference cycles, so nothing is lost by collecting once, after the load.

After the load the records are long-lived, and a full collection walks every one of them: at
100,000 apps one full collection during matching took longer than the matching itself, and the
interpreter runs one more at exit. So what a load built goes to the oldest generation at once
(no young collection walks it), and inside a command that exits after one pass (`@one_pass`:
`check`, `inventory`) it is frozen: left to reference counting alone.
"""

from __future__ import annotations

import functools
import gc

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Callable, TypeVar

    Result = TypeVar("Result")
_frozen = False
"""Inside a `one_pass` command: loads leave what they built frozen."""
_held = False
"""Objects stay frozen from a finished `one_pass` command."""


def one_pass(command: Callable[..., Result]) -> Callable[..., Result]:
    """Decorate a command that exits after one pass: what each bulk load inside it built (and all
    else alive then) is frozen (`gc.freeze`), so neither later collections nor the one at exit
    walk it. It stays frozen after the command returns; the next load or one-pass command outside
    gives it back to the collector first (`gc.unfreeze`), so a caller that goes on — a test
    calling the CLI in-process — loses nothing for good. Not for the service, whose garbage
    cycles must not wait for a next scan."""
    @functools.wraps(command)
    def run(*args: object, **kwargs: object) -> Result:
        global _frozen
        outer = _frozen
        if not outer:
            _release()
        _frozen = True
        try:
            return command(*args, **kwargs)
        finally:
            _frozen = outer
    return run


def _release() -> None:
    global _held
    if _held:
        gc.unfreeze()
        _held = False


class paused_gc:  # noqa: N801 - named as the function it was, a context manager
    """Disable cyclic GC inside the block and restore the previous state after it.

    What the block built then goes to the oldest generation (`gc.freeze` then `gc.unfreeze`: two
    list splices, no walk), or stays frozen inside a `one_pass` command. When something else has
    frozen objects (a pre-fork server) the frozen set is left as it is. A class rather than a
    `contextlib.contextmanager`: contextlib was the one module a check imported for it."""

    def __enter__(self) -> None:
        if not _frozen:
            _release()
        self._enabled = gc.isenabled()
        self._promote = _held or gc.get_freeze_count() == 0  # frozen by us, or nothing frozen at all
        gc.disable()

    def __exit__(self, *exc_info: object) -> None:
        global _held
        if self._promote:
            gc.freeze()
            if _frozen:
                _held = True
            else:
                gc.unfreeze()
        if self._enabled:
            gc.enable()
