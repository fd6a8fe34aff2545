"""AppImages: self-contained executables that no package database knows, in system and per-user
folders.

An AppImage is an ELF executable with the magic `AI` and its type (1: ISO 9660, 2: squashfs)
at offset 8 (AppImage specification, "Magic bytes"). Only the first 64 bytes of each candidate
file are read to recognise it. The name and version come from the .desktop file at the root of a
type-2 image's squashfs (which starts where the ELF runtime ends: its section header table is
last), read with `unsquashfs -o OFFSET -cat` — one short process per AppImage found, none per
file scanned; without unsquashfs, or for type 1, from the file name (`Name-1.2.3-x86_64.AppImage`,
the convention appimagetool follows).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterable

from agent.inventory.base import Collected, Context, home_dirs, record_error
from agent.inventory.reading import exists, folder_scan, host_path, read_head
from agent.inventory.desktop import parse_desktop_entry
from agent.log import log_event
from agent.model import App, CollectorError
from agent.runner import CommandError

logger = logging.getLogger(__name__)

SYSTEM_DIRS = (("/opt", 3), ("/usr/local/bin", 1), ("/Applications", 2))
USER_DIRS = (
    ("Applications", 2), ("AppImages", 2), ("Downloads", 1), ("Desktop", 1), ("bin", 1),
    (".local/bin", 1), ("opt", 2),
)
# Patterns as text, compiled by `re` on first use (and cached there): only a file found to be an
# AppImage is named by them, and compiling them at import was part of every full check's start-up.
_ARCH = r"(?i)[-_.](x86[-_]64|amd64|x64|aarch64|arm64|armhf|i[36]86|x86)$"
_VERSION = r"^(?P<name>.+?)[-_ ]v?(?P<version>\d[\w.+~-]*)$"
_SKIP_DIRS = frozenset({"node_modules", ".git", "__pycache__", "lib", "share", "include"})
UNSQUASHFS_TIMEOUT = 15.0
HEADER_SIZE = 64


def appimage_type(head: bytes) -> int:
    """Given a file's first bytes, return its AppImage type (1 or 2), or 0 if not an AppImage."""
    if len(head) >= 11 and head[:4] == b"\x7fELF" and head[8:10] == b"AI" and head[10] in (1, 2):
        return head[10]
    return 0


def elf_size(head: bytes) -> int:
    """Given an ELF file's first 64 bytes, return where its section header table ends (the size
    of the AppImage runtime, where the payload starts), or 0 if the header is not readable."""
    if len(head) < HEADER_SIZE or head[4] not in (1, 2) or head[5] not in (1, 2):
        return 0
    # int.from_bytes rather than struct: importing struct loads a shared library (_struct) on
    # every full check's start-up, for a header read only when an AppImage is found.
    order = "little" if head[5] == 1 else "big"
    shoff, sizes = (head[0x28:0x30], 0x3A) if head[4] == 2 else (head[0x20:0x24], 0x2E)  # 64- or 32-bit
    shentsize = int.from_bytes(head[sizes:sizes + 2], order)
    shnum = int.from_bytes(head[sizes + 2:sizes + 4], order)
    return int.from_bytes(shoff, order) + shentsize * shnum


def embedded_entry(ctx: Context, path: Path, offset: int) -> dict[str, str]:
    """Return the keys of the .desktop file at the root of a type-2 AppImage's squashfs, or {}
    when unsquashfs is missing or cannot read it."""
    if offset <= 0 or ctx.runner.which("unsquashfs") is None:
        return {}
    try:
        found = host_path(path, root=ctx.root)  # unsquashfs opens it by name: links resolved inside the root first
        result = ctx.runner.run("unsquashfs", ["-o", str(offset), "-cat", str(found), "*.desktop"],
                                timeout=UNSQUASHFS_TIMEOUT)
    except (CommandError, OSError) as exc:
        log_event(logger, logging.INFO, "appimage.desktop_unreadable", path=str(path), error=str(exc))
        return {}
    return parse_desktop_entry(result.stdout)


def name_version(filename: str) -> tuple[str, str]:
    """Given an AppImage's file name, return (name, version); version "" when the name has none."""
    stem = re.sub(r"\.appimage$", "", filename, flags=re.I)
    stem = re.sub(_ARCH, "", stem)
    found = re.match(_VERSION, stem)
    return (found["name"], found["version"]) if found else (stem, "")


def _candidates(root: Path, folder: Path, depth: int, errors: list[CollectorError]) -> list[Path]:
    """Return the files under `folder`, `depth` levels deep, that may be AppImages: executable,
    or named *.AppImage (a fresh download is often not executable yet). Links into other folders
    are not followed (an AppImage is a file; a symlink to one is found at its target). A folder
    that cannot be listed is one error in `errors`; its siblings are still searched."""
    files: list[Path] = []
    try:
        kept = folder_scan(folder, lambda entries: _kept(entries, descend=depth > 1), root=root)
    except (FileNotFoundError, NotADirectoryError):
        return files
    except OSError as exc:
        errors.append(CollectorError("appimage", f"{folder}: {exc.strerror or exc}"))
        return files
    for name, searched in kept:
        if searched:
            files.extend(_candidates(root, folder / name, depth - 1, errors))
        else:
            files.append(folder / name)
    return files


def _kept(entries: Iterable[os.DirEntry[str]], descend: bool) -> list[tuple[str, bool]]:
    """Return (name, whether it is a folder to search) of the entries that may be AppImages —
    regular files named *.AppImage or with an execute bit (lstat: the listing has no mode) — and,
    when `descend`, of the folders to search, sorted by name; an entry removed while the folder
    is listed is left out. Links and other kinds of file are not kept (the listing's d_type)."""
    kept = []
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False):
                if entry.name.lower().endswith(".appimage") or entry.stat(follow_symlinks=False).st_mode & 0o111:
                    kept.append((entry.name, False))
            elif descend and entry.is_dir(follow_symlinks=False) and entry.name not in _SKIP_DIRS:
                kept.append((entry.name, True))
        except FileNotFoundError:
            continue
    kept.sort()  # names are unique in a folder: the pairs sort by name
    return kept


def appimage_app(ctx: Context, path: Path, user: str) -> App | None:
    """Return the App of `path` if it is an AppImage, else None. Raise OSError if unreadable."""
    head = read_head(path, HEADER_SIZE, root=ctx.root)
    kind = appimage_type(head)
    if not kind:
        return None
    name, version = name_version(path.name)
    entry = embedded_entry(ctx, path, elf_size(head)) if kind == 2 else {}
    name = entry.get("Name") or name
    version = entry.get("X-AppImage-Version") or version
    device_path = "/" + str(path.relative_to(ctx.root)).lstrip("/")
    return App(
        source="appimage", id=path.name, name=name, version=version, path=device_path, user=user,
        extra=(("appimage_type", str(kind)),),
    )


class AppImageCollector:
    """AppImages in the system's and every user's usual folders."""

    name = "appimage"
    live_only = False

    def unavailable(self, ctx: Context) -> str | None:
        there = any(exists(folder, root=ctx.root, folder=True) for folder, _, _ in _folders(ctx))
        return None if there else "none of the folders AppImages are kept in"

    def collect(self, ctx: Context) -> Collected:
        result = Collected()
        seen: set[Path] = set()
        for folder, depth, user in _folders(ctx):
            for path in _candidates(ctx.root, folder, depth, result.errors):
                if path in seen:
                    continue
                seen.add(path)
                try:
                    app = appimage_app(ctx, path, user)
                except Exception as exc:  # noqa: BLE001 - one bad file is one error, the others still count
                    result.errors.append(record_error("appimage", path, exc))
                    continue
                if app is not None:
                    result.apps.append(app)
        return result


def _folders(ctx: Context) -> list[tuple[Path, int, str]]:
    """Return (folder, depth, user) of every folder searched, whether it is there or not: the
    search skips one that is not (as `exists` would have), so nothing is looked up twice."""
    folders = [(ctx.path(d), depth, "") for d, depth in SYSTEM_DIRS]
    return folders + [(home / d, depth, user) for user, home in home_dirs(ctx) for d, depth in USER_DIRS]
