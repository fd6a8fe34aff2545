"""`appban service install|uninstall`: put the systemd unit in place (or take it away) and
enable (or disable) it, on this system or, with --root, on a system image without touching the host.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from agent.commands.common import add_config_arg, config_from
from agent.runner import CommandError, Runner
from agent.service.settings import ServiceError

UNIT = "appban.service"
DROP_IN = "report-only.conf"
UNIT_DIR = "etc/systemd/system"
SHIPPED_EXEC = "/usr/bin/appban"
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
    parser.add_argument("--executable", metavar="PATH", default=_default_executable(),
                        help="the appban program the unit starts (default: this one)")
    parser.set_defaults(run=run)


def _default_executable() -> str:
    here = Path(sys.argv[0])
    if here.name == "appban" and here.is_file():
        return str(here.resolve())
    return shutil.which("appban") or SHIPPED_EXEC


def shipped(name: str) -> str:
    """Return the text of a file shipped in packaging/systemd."""
    return resources.files("agent.systemd").joinpath(name).read_text(encoding="utf-8")


def plan(action: str, root: Path, executable: str, report_only: bool) -> list[Step]:
    """Given the action, target root, program path and drop-in choice, return the steps in order.

    On the running system (root /) systemd is reloaded and the service started or stopped; on an
    image (`systemctl --root`) the unit is only enabled or disabled.
    """
    unit, drop_in = root / UNIT_DIR / UNIT, root / UNIT_DIR / f"{UNIT}.d" / DROP_IN
    live = root == Path("/")
    systemctl = ("systemctl",) if live else ("systemctl", f"--root={root}")
    now = ("--now",) if live else ()
    reload = [Step("run", argv=("systemctl", "daemon-reload"))] if live else []
    if action == "install":
        steps = [Step("write", unit, shipped(UNIT).replace(SHIPPED_EXEC + " ", executable + " ", 1))]
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


def run(args: argparse.Namespace) -> int:
    steps = plan(args.action, Path(args.root).resolve(), args.executable, args.report_only)
    if args.dry_run:
        sys.stdout.write("".join(step.describe() + "\n" for step in steps))
        return 0
    execute(steps, Runner(commands=config_from(args).commands))
    return 0
