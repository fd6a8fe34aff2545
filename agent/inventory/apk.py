"""Installed Alpine packages, read from apk's database (no apk process needed).

Format (apk-tools `src/database.c`, `apk_db_index_write`/`apk_pkg_write_index_entry`): the file
/lib/apk/db/installed holds one stanza per package, separated by blank lines, of `X:value`
lines: `P` name, `V` version, `A` architecture, `m` maintainer, `o` origin (source package);
then the installed files as `F:` (folder, relative to /) followed by its `R:` (file) lines.
"""

from __future__ import annotations

from agent.inventory.base import Collected, Context, read_text_database
from agent.inventory.preconditions import APK, APK_INSTALLED
from agent.inventory.reading import DATABASE_LIMIT, read_text
from agent.model import App


def _stanzas(text: str) -> list[list[str]]:
    return [stanza.splitlines() for stanza in text.split("\n\n") if stanza.strip()]


def parse_installed(text: str) -> list[App]:
    """Given the text of apk's `installed` database, return one App per package."""
    apps = []
    for lines in _stanzas(text):
        fields: dict[str, str] = {}
        for line in lines:
            if len(line) > 1 and line[1] == ":" and line[0] in "PVAmo":
                fields.setdefault(line[0], line[2:])
        if "P" not in fields:
            continue
        extra = {"arch": fields.get("A", ""), "origin": fields.get("o", "")}
        apps.append(App(
            source="apk", id=fields["P"], name=fields["P"], version=fields.get("V", ""),
            publisher=fields.get("m", ""), extra=tuple(sorted((k, v) for k, v in extra.items() if v)),
        ))
    return apps


def package_files(text: str, package: str) -> list[str]:
    """Given apk's `installed` database and a package name, return the paths it installed."""
    for lines in _stanzas(text):
        if f"P:{package}" not in lines:
            continue
        files, folder = [], ""
        for line in lines:
            if line.startswith("F:"):
                folder = line[2:]
            elif line.startswith("R:"):
                files.append(f"/{folder}/{line[2:]}" if folder else f"/{line[2:]}")
        return files
    return []


def app_files(ctx: Context, app: App) -> list[str]:
    """Given an apk App, return the paths its package installed."""
    return package_files(read_text(ctx.path(APK_INSTALLED), DATABASE_LIMIT, root=ctx.root), app.id)


class ApkCollector:
    """Alpine packages from apk's database under the context's root."""

    name = "apk"
    live_only = False

    def unavailable(self, ctx: Context) -> str | None:
        return APK(ctx)

    def collect(self, ctx: Context) -> Collected:
        return read_text_database(self.name, ctx.path(APK_INSTALLED), parse_installed, ctx.root)
