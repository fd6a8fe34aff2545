"""The one place appban starts external commands.

Every command is an argument list (never a shell string), has a timeout, and is logged; its
program is resolved through config `commands:` so a test or an unusual host can point `adb`,
`rpm` or `flatpak` at another binary (or at a stand-in that replays recorded output).

subprocess and shutil are imported when a command is looked up or run: a check that reads only
files (dpkg's status, /proc) makes a Runner but starts nothing, and they cost ~3 ms of its start.
"""

from __future__ import annotations

import logging
import os
from dataclasses import field

from agent.log import log_event
from agent.records import dataclass

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Mapping, Sequence

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0


class CommandError(RuntimeError):
    """A command that could not run, timed out or failed; the message is one line."""


@dataclass(frozen=True)
class Result:
    """What a finished command printed and returned."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Runner:
    """Runs commands, resolving program names through the configured command paths."""

    commands: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)

    def which(self, program: str) -> str | None:
        """Return the path a program resolves to here, or None when it is not installed."""
        configured = self.commands.get(program)
        if configured:
            return configured if os.path.isfile(configured) and os.access(configured, os.X_OK) else None
        import shutil

        return shutil.which(program)

    def run(
        self,
        program: str,
        args: Sequence[str],
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        input_text: str | None = None,
    ) -> Result:
        """Given a program name and its arguments, run it and return its Result.

        Raise CommandError if it is missing, times out, or (with `check`) exits non-zero.
        """
        import subprocess

        path = self.which(program)
        if path is None:
            raise CommandError(f"{program}: command not found")
        argv = (path, *args)
        env = {**os.environ, "LC_ALL": "C", **self.env}
        log_event(logger, logging.DEBUG, "command.start", argv=" ".join(argv), timeout=timeout)
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=timeout, env=env, check=False,
                stdin=subprocess.DEVNULL if input_text is None else None,
                input=input_text.encode() if input_text is not None else None,
            )
        except subprocess.TimeoutExpired:
            raise CommandError(f"{program}: timed out after {timeout:g}s") from None
        except OSError as exc:
            raise CommandError(f"{program}: {exc.strerror or exc}") from None
        result = Result(
            argv, done.returncode,
            done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"),
        )
        if check and done.returncode != 0:
            detail = " ".join(result.stderr.split())[:300] or f"exit status {done.returncode}"
            raise CommandError(f"{program} {' '.join(args[:3])}: {detail}")
        return result
