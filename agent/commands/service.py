"""`appban service install|uninstall`: put the systemd unit in place (or take it away) and
enable (or disable) it, on this system or, with --root, on a system image without touching the host.

Install cannot misfire: the unit starts the config it was given (--config), which must load
first; a program inside a source checkout's virtualenv (what `./appban` runs) is refused unless
named on purpose with --executable; paths with spaces are quoted as systemd reads them.
On Windows and macOS the .msi and the .pkg register the service (docs/platforms.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from agent import platform as host
from agent.commands.common import add_config_arg
from agent.config import DEFAULT_PATH, Config, ConfigError, load_config
from agent.runner import CommandError, Runner
from agent.service.settings import ServiceError

UNIT = "appban.service"
DROP_IN = "report-only.conf"
UNIT_DIR = "etc/systemd/system"
SHIPPED_EXEC = "/usr/bin/appban"
STATE_DIR = "/var/lib/appban"
SYSTEMCTL_TIMEOUT = 60.0


@dataclass(frozen=True)
class Step:
    """One step of install or uninstall: write `text` to `path`, remove `path`, or run `argv`."""

    kind: str
    path: Path | None = None
    text: str = ""
    argv: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"run {' '.join(self.argv)}" if self.kind == "run" else f"{self.kind} {self.path}"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("service", help="install or uninstall the systemd service")
    parser.add_argument("action", choices=("install", "uninstall"))
    add_config_arg(parser)
    parser.add_argument("--root", metavar="DIR", default="/",
                        help="act on the system image at DIR (systemctl --root; nothing is started)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    parser.add_argument("--report-only", action="store_true",
                        help="also install the stricter drop-in for hosts that never block")
    parser.add_argument("--executable", metavar="PATH",
                        help="the appban program the unit starts (default: this one, unless it runs from a "
                             "source checkout's virtualenv)")
    parser.set_defaults(run=run)


def _default_executable() -> str:
    here = Path(sys.argv[0])
    if here.name == "appban" and here.is_file():
        return str(here.resolve())
    return shutil.which("appban") or SHIPPED_EXEC


def checkout_venv(executable: Path) -> Path | None:
    """Given a program path, return the virtualenv it lies in when that virtualenv sits in a
    source checkout of appban (a folder with .git or agent/cli.py beside it), else None.

    Why refuse those: a unit started from a developer's checkout breaks as soon as the checkout
    is updated, moved or deleted, and runs code nobody packaged.
    """
    venv = executable.parent.parent
    if not (venv / "pyvenv.cfg").is_file():
        return None
    return venv if (venv.parent / ".git").exists() or (venv.parent / "agent" / "cli.py").is_file() else None


def systemd_quote(word: str) -> str:
    """Return one ExecStart word as systemd.service(5) reads it: double-quoted (backslash and quote
    escaped) when it holds white space, quotes or backslashes, with % and $ doubled so that neither a
    specifier nor a variable is expanded in a path."""
    word = word.replace("%", "%%").replace("$", "$$")
    if not word or any(c.isspace() or c in "\"'\\" for c in word):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def exec_start(executable: str, config_path: str) -> str:
    """Return the unit's ExecStart line for the program and the config it must run with."""
    words = [executable, "run", "--config", config_path, "--state-dir", STATE_DIR]
    return "ExecStart=" + " ".join(systemd_quote(word) for word in words)


def unit_text(executable: str, config_path: str) -> str:
    """Return the shipped unit with its ExecStart pointed at the program and the config."""
    lines = shipped(UNIT).splitlines(keepends=True)
    return "".join(exec_start(executable, config_path) + "\n" if line.startswith("ExecStart=") else line
                   for line in lines)


def shipped(name: str) -> str:
    """Return the text of a file shipped in packaging/systemd."""
    return resources.files("agent.systemd").joinpath(name).read_text(encoding="utf-8")


def plan(action: str, root: Path, executable: str, report_only: bool, config_path: str = DEFAULT_PATH) -> list[Step]:
    """Given the action, target root, program path, drop-in choice and the config the service is
    to run with, return the steps in order.

    On the running system (root /) systemd is reloaded and the service started or stopped; on an
    image (`systemctl --root`) the unit is only enabled or disabled.
    """
    unit, drop_in = root / UNIT_DIR / UNIT, root / UNIT_DIR / f"{UNIT}.d" / DROP_IN
    live = root == Path("/")
    systemctl = ("systemctl",) if live else ("systemctl", f"--root={root}")
    now = ("--now",) if live else ()
    reload = [Step("run", argv=("systemctl", "daemon-reload"))] if live else []
    if action == "install":
        steps = [Step("write", unit, unit_text(executable, config_path))]
        steps += [Step("write", drop_in, shipped(DROP_IN))] if report_only else [Step("remove", drop_in)]
        return steps + reload + [Step("run", argv=(*systemctl, "enable", *now, UNIT))]
    return [Step("run", argv=(*systemctl, "disable", *now, UNIT)), Step("remove", drop_in),
            Step("remove", unit), *reload]


def execute(steps: list[Step], runner: Runner) -> None:
    """Carry out the steps in order. Raise ServiceError (one line) if a file or systemctl fails."""
    for step in steps:
        try:
            if step.kind == "write":
                step.path.parent.mkdir(parents=True, exist_ok=True)
                step.path.write_text(step.text, encoding="utf-8")
            elif step.kind == "remove":
                step.path.unlink(missing_ok=True)
                folder = step.path.parent
                if folder.name.endswith(".d") and folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            else:
                runner.run(step.argv[0], step.argv[1:], timeout=SYSTEMCTL_TIMEOUT)
        except OSError as exc:
            raise ServiceError(f"service: {exc.filename}: {exc.strerror or exc}") from None
        except CommandError as exc:
            raise ServiceError(f"service: {exc}") from None


def chosen_executable(given: str | None) -> str:
    """Return the program the unit is to start: --executable as given, else this one.

    Raise ServiceError when, not given, this one runs from a source checkout's virtualenv.
    """
    if given:
        return given
    found = _default_executable()
    venv = checkout_venv(Path(found))
    if venv is not None:
        raise ServiceError(f"service: {found} runs from the virtualenv of a source checkout ({venv}); install "
                           "the package (docs/platforms.md) or name the program with --executable PATH")
    return found


def service_config(root: Path, config_path: str) -> Config:
    """Load the config the unit will name (read under root for an image); return it.

    Raise ServiceError (one line) when it does not load: a unit that cannot start is refused now.
    """
    path = Path(config_path)
    if not path.is_absolute():
        raise ServiceError(f"service: --config {config_path}: the unit needs an absolute path")
    try:
        return load_config(str(root / path.relative_to("/")))
    except ConfigError as exc:
        raise ServiceError(f"service: the unit would run with a config that does not load: {exc}") from None


def run(args: argparse.Namespace) -> int:
    if host.service_manager() != "systemd":
        raise ServiceError(f"service: this command manages systemd units; here the service manager is "
                           f"{host.service_manager()}, which the package sets up (docs/platforms.md)")
    root = Path(args.root).resolve()
    config_path = args.config or DEFAULT_PATH
    commands = {}
    if args.action == "install":
        if args.config and root == Path("/"):
            config_path = str(Path(args.config).resolve())
        commands = dict(service_config(root, config_path).commands)
        executable = chosen_executable(args.executable)
    else:
        commands = dict(load_config(args.config).commands)
        executable = args.executable or SHIPPED_EXEC
    steps = plan(args.action, root, executable, args.report_only, config_path)
    if args.dry_run:
        sys.stdout.write("".join(step.describe() + "\n" for step in steps))
        return 0
    execute(steps, Runner(commands=commands))
    return 0
