"""Stand-in executables for the tools a test cannot run for real here (adb without a phone,
msiexec and PowerShell without Windows) or must not (fagenrules, notify-send, flatpak and snap
on the real system): kept together, as borgmatic keeps its fake executables.

A stand-in is a small Python program, run by the test's own interpreter, that records each run's
arguments, environment and pid as one JSON line, prints a canned answer, optionally hangs (a tool
stuck on a dead mount) and exits with a given code;
the runner is pointed at it through config `commands`, so the code under test builds the same
argv it would for the real tool and the test asserts exactly that argv.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

_PROGRAM = """\
#!{python}
import json, os, sys, time
with open({log!r}, "a", encoding="utf-8") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ), "pid": os.getpid()}}) + "\\n")
sys.stdout.write({stdout!r})
sys.stderr.write({stderr!r})
sys.stdout.flush()
time.sleep({hang})
sys.exit({exit_code})
"""


@dataclass(frozen=True)
class StandIn:
    """An executable at `path` whose runs are recorded in `path`.runs.jsonl."""

    path: Path

    @property
    def log(self) -> Path:
        return self.path.with_name(self.path.name + ".runs.jsonl")

    def _runs(self) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]

    def calls(self) -> list[list[str]]:
        """Return the arguments of every run so far, oldest first."""
        return [run["argv"] for run in self._runs()]  # type: ignore[misc]

    def environments(self) -> list[dict[str, str]]:
        """Return the environment of every run so far, oldest first."""
        return [run["env"] for run in self._runs()]  # type: ignore[misc]

    def pids(self) -> list[int]:
        """Return the process id of every run so far, oldest first."""
        return [run["pid"] for run in self._runs()]  # type: ignore[misc]

    def __str__(self) -> str:
        return str(self.path)


def stand_in(path: Path, stdout: str = "", exit_code: int = 0, stderr: str = "", hang: float = 0.0) -> StandIn:
    """Write a stand-in executable at `path` that prints `stdout` (and `stderr`), then waits
    `hang` seconds and exits with `exit_code`; return it."""
    path.write_text(_PROGRAM.format(python=sys.executable, log=str(StandIn(path).log), stdout=stdout,
                                    stderr=stderr, exit_code=exit_code, hang=hang), encoding="utf-8")
    path.chmod(0o755)
    return StandIn(path)
