"""Run appban as on Windows: the POSIX-only modules unimportable, winreg absent, and the Windows
platform module (agent.platform._windows) in force with a stand-in for msvcrt.

Usage: python tests/without_posix.py STEP... where a step is `import` (every module of the
package), `check ROOT BANLIST` (the pure parts of check on a dpkg tree), `plan ROOT BANLIST`
(enforcement planning), or `serve CONFIG STATE_DIR` (appban run until Ctrl+C). The contract test in
tests/integration/test_platform_contract.py drives it.

The stand-in follows msvcrt.locking() as Python's documentation describes it (LK_NBLCK raises
OSError when the bytes are locked, by any handle; LK_UNLCK releases; locks are per file and byte
range, from the current position): there is no Windows here to supply the real one.
"""

from __future__ import annotations

import errno
import importlib
import importlib.abc
import os
import pkgutil
import sys
import types

BLOCKED = frozenset({"fcntl", "pwd", "grp", "termios", "winreg"})


class Unimportable(importlib.abc.MetaPathFinder):
    """Makes the BLOCKED modules fail to import, as they do on Windows (winreg: as on Linux)."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201 - importlib's protocol
        if name in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the contract test)", name=name)
        return None


def msvcrt_stand_in() -> types.ModuleType:
    """Return a module with msvcrt's locking() and its constants (process-wide byte locks)."""
    held: set[tuple[int, int, int]] = set()
    module = types.ModuleType("msvcrt")
    module.LK_UNLCK, module.LK_LOCK, module.LK_NBLCK, module.LK_RLCK, module.LK_NBRLCK = 0, 1, 2, 3, 4

    def locking(fd: int, mode: int, nbytes: int) -> None:
        stat = os.fstat(fd)
        key = (stat.st_dev, stat.st_ino, os.lseek(fd, 0, os.SEEK_CUR))
        if mode == module.LK_UNLCK:
            held.discard(key)
        elif key in held:
            raise PermissionError(errno.EACCES, "Permission denied")
        else:
            held.add(key)

    module.locking = locking
    return module


def block() -> None:
    for name in BLOCKED:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, Unimportable())


def import_all() -> list[str]:
    """Import every module of the agent package; return their names."""
    import agent

    names = ["agent"]
    for info in pkgutil.walk_packages(agent.__path__, "agent."):
        if info.name == "agent.__main__":  # `python -m agent`: importing it runs the CLI
            continue
        importlib.import_module(info.name)
        names.append(info.name)
    return names


def windows_platform() -> None:
    """Put the Windows module behind the facade (the calls look it up each time), with the
    msvcrt stand-in. Only now, after every import: the standard library's subprocess takes the
    mere presence of msvcrt to mean Windows."""
    sys.modules["msvcrt"] = msvcrt_stand_in()
    import agent.platform
    from agent.platform import _windows

    agent.platform.OS = _windows


def main(argv: list[str]) -> int:
    block()
    imported = import_all()
    windows_platform()
    from agent.cli import main as appban

    step, *args = argv
    if step == "import":
        print("\n".join(imported))
        leaked = sorted(BLOCKED & set(sys.modules))
        return 3 if leaked else 0
    if step == "check":
        root, banlist = args
        return appban(["check", "--root", root, "--banlist", banlist, "--source", "dpkg", "--format", "json"])
    if step == "plan":
        return plan(*args)
    if step == "serve":
        config, state_dir = args
        from agent.platform import watch

        watch.POLL = 0.2  # notice the config change within the test's patience
        return appban(["run", "--config", config, "--state-dir", state_dir])
    raise SystemExit(f"unknown step {step}")


def plan(root: str, banlist: str) -> int:
    """Plan enforcement for the tree's findings (blocking on) and print the plan."""
    from datetime import datetime, timezone
    from pathlib import Path

    from agent.banlist.parse import parse_banlist
    from agent.config import Config, EnforcementConfig
    from agent.enforce.plan import Facts
    from agent.enforce.plan import plan as make_plan
    from agent.inventory import collect
    from agent.inventory.base import Context
    from agent.match import compile_banlist, match

    inventory = collect(Context(root=Path(root), live=False, config=Config()), ["dpkg"])
    compiled = compile_banlist(parse_banlist(Path(banlist).read_bytes(), banlist))
    findings = match(inventory.apps, {d.id: d for d in inventory.devices}, compiled, datetime.now(timezone.utc))
    config = EnforcementConfig(mode="block")
    made = make_plan(findings, config, inventory.devices[0], Facts(uninstall_sources=frozenset({"dpkg"})))
    sys.stdout.write(made.render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
