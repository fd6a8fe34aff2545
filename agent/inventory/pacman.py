"""Installed Arch Linux packages, read from pacman's local database (no pacman process needed).

Format (libalpm `be_local.c`, which writes it): one folder per package,
/var/lib/pacman/local/<name>-<version>/, holding `desc` — blocks of a `%KEY%` line followed by
value lines and a blank line (`%NAME%`, `%VERSION%` as `[epoch:]pkgver-pkgrel`, `%ARCH%`,
`%PACKAGER%`) — and `files`, whose `%FILES%` block lists installed paths without the leading /.
"""

from __future__ import annotations

import stat

from agent.inventory.base import Collected, Context, record_error
from agent.inventory.preconditions import PACMAN, PACMAN_DB
from agent.inventory.reading import DATABASE_LIMIT, folder_entries, read_text
from agent.model import App, CollectorError


def parse_blocks(text: str) -> dict[str, list[str]]:
    """Given a pacman database file (`desc`, `files`), return {KEY: value lines}."""
    blocks: dict[str, list[str]] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith("%") and line.endswith("%") and len(line) > 2:
            key = line[1:-1]
            blocks[key] = []
        elif line and key:
            blocks[key].append(line)
    return blocks


def desc_app(text: str) -> App | None:
    """Given a package's `desc` file, return its App (None without a %NAME%)."""
    blocks = parse_blocks(text)
    name = (blocks.get("NAME") or [""])[0]
    if not name:
        return None
    arch = (blocks.get("ARCH") or [""])[0]
    return App(
        source="pacman", id=name, name=name, version=(blocks.get("VERSION") or [""])[0],
        publisher=(blocks.get("PACKAGER") or [""])[0],
        extra=(("arch", arch),) if arch else (),
    )


def app_files(ctx: Context, app: App) -> list[str]:
    """Given a pacman App, return the paths its package installed (from its `files` entry)."""
    folder = ctx.path(f"{PACMAN_DB}/{app.id}-{app.version}")
    try:
        text = read_text(folder / "files", DATABASE_LIMIT, root=ctx.root)
    except FileNotFoundError:
        return []
    return ["/" + p for p in parse_blocks(text).get("FILES", [])]


class PacmanCollector:
    """Arch Linux packages from pacman's local database under the context's root."""

    name = "pacman"
    live_only = False

    def unavailable(self, ctx: Context) -> str | None:
        return PACMAN(ctx)

    def collect(self, ctx: Context) -> Collected:
        result = Collected()
        base = ctx.path(PACMAN_DB)
        for name, info in folder_entries(base, root=ctx.root):
            if not stat.S_ISDIR(info.st_mode):
                continue
            desc = base / name / "desc"
            try:
                app = desc_app(read_text(desc, root=ctx.root))
            except Exception as exc:  # noqa: BLE001 - one bad entry is one error, the others still count
                result.errors.append(record_error("pacman", desc, exc))
                continue
            if app is None:
                result.errors.append(CollectorError("pacman", f"{desc}: no %NAME% (truncated?)"))
            else:
                result.apps.append(app)
        return result
