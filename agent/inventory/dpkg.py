"""Installed Debian packages, read from dpkg's status database (no dpkg process needed).

Reading `/var/lib/dpkg/status` directly is faster than running `dpkg-query`, works on a mounted
image, and gives the same answer: a package counts when its status's third word is `installed`
(half-installed, config-files and other states are not installed apps).
"""

from __future__ import annotations

from agent.inventory.base import Collected, Context
from agent.model import App

STATUS_FILE = "/var/lib/dpkg/status"
_WANTED = ("Package", "Status", "Version", "Architecture", "Maintainer", "Multi-Arch", "Essential", "Priority")


def parse_status(text: str) -> list[App]:
    """Given the text of a dpkg status file, return one App per installed package (per architecture)."""
    apps = []
    for stanza in text.split("\n\n"):
        fields = _fields(stanza)
        status = fields.get("Status", "").split()
        if len(status) != 3 or status[2] != "installed" or "Package" not in fields:
            continue
        name, arch = fields["Package"], fields.get("Architecture", "")
        apps.append(App(
            source="dpkg", id=name, name=name, version=fields.get("Version", ""),
            publisher=fields.get("Maintainer", ""),
            aliases=(f"{name}:{arch}",) if arch and arch != "all" else (),
            extra=_extra(arch, fields),
        ))
    return apps


def _extra(arch: str, fields: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The architecture, and the marks that put a package beyond blocking (Essential: yes,
    Priority: required), so enforcement can refuse without reading the database again."""
    extra = [("arch", arch)] if arch else []
    if fields.get("Essential", "").lower() == "yes":
        extra.append(("essential", "yes"))
    if fields.get("Priority", "").lower() == "required":
        extra.append(("priority", "required"))
    return tuple(sorted(extra))


def _fields(stanza: str) -> dict[str, str]:
    """Return the few single-line fields we need (continuation lines are skipped)."""
    fields = {}
    for line in stanza.split("\n"):
        if not line or line[0] in " \t#":
            continue
        key, sep, value = line.partition(":")
        if sep and key in _WANTED:
            fields[key] = value.strip()
    return fields


class DpkgCollector:
    """Debian/Ubuntu packages from the status database under the context's root."""

    name = "dpkg"
    live_only = False

    def unavailable(self, ctx: Context) -> str | None:
        return None if ctx.path(STATUS_FILE).exists() else f"no dpkg database at {ctx.path(STATUS_FILE)}"

    def collect(self, ctx: Context) -> Collected:
        text = ctx.path(STATUS_FILE).read_text(encoding="utf-8", errors="replace")
        return Collected(apps=parse_status(text))


def package_files(root: str, package: str, arch: str = "") -> list[str]:
    """Return the paths a package installed (from dpkg's `info/<pkg>[:arch].list`), so blocking
    knows which executables belong to a banned package. Missing list → empty."""
    info = f"{root.rstrip('/')}/var/lib/dpkg/info"
    for name in ((f"{package}:{arch}", package) if arch else (package,)):
        try:
            with open(f"{info}/{name}.list", encoding="utf-8", errors="replace") as handle:
                return [line.rstrip("\n") for line in handle if line.strip()]
        except FileNotFoundError:
            continue
    return []
