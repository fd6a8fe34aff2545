"""AppImages: self-contained executables that no package database knows, in system and per-user
folders.

An AppImage is an ELF executable with the magic `AI` and its type (1: ISO 9660, 2: squashfs)
at offset 8 (AppImage specification, "Magic bytes"). Only the first 11 bytes of each candidate
file are read. The name and version are taken from the file name (`Name-1.2.3-x86_64.AppImage`,
the convention appimagetool follows): reading the embedded .desktop file would mean opening the
squashfs image appended to the runtime, which costs far more than this whole collector.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from agent.inventory.base import Collected, Context, home_dirs
from agent.model import App, CollectorError

SYSTEM_DIRS = (("/opt", 3), ("/usr/local/bin", 1), ("/Applications", 2))
USER_DIRS = (
    ("Applications", 2), ("AppImages", 2), ("Downloads", 1), ("Desktop", 1), ("bin", 1),
    (".local/bin", 1), ("opt", 2),
)
_ARCH = re.compile(r"[-_.](x86[-_]64|amd64|x64|aarch64|arm64|armhf|i[36]86|x86)$", re.I)
_VERSION = re.compile(r"^(?P<name>.+?)[-_ ]v?(?P<version>\d[\w.+~-]*)$")
_SKIP_DIRS = frozenset({"node_modules", ".git", "__pycache__", "lib", "share", "include"})


def appimage_type(head: bytes) -> int:
    """Given a file's first bytes, return its AppImage type (1 or 2), or 0 if not an AppImage."""
    if len(head) >= 11 and head[:4] == b"\x7fELF" and head[8:10] == b"AI" and head[10] in (1, 2):
        return head[10]
    return 0


def name_version(filename: str) -> tuple[str, str]:
    """Given an AppImage's file name, return (name, version); version "" when the name has none."""
    stem = re.sub(r"\.appimage$", "", filename, flags=re.I)
    stem = _ARCH.sub("", stem)
    found = _VERSION.match(stem)
    return (found["name"], found["version"]) if found else (stem, "")


def _candidates(folder: Path, depth: int) -> list[Path]:
    """Return the regular files under `folder`, `depth` levels deep, without following links
    into other folders (an AppImage is a file; a symlink to one is found at its target)."""
    files = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return files
    for entry in entries:
        if entry.is_file(follow_symlinks=False):
            files.append(Path(entry.path))
        elif depth > 1 and entry.is_dir(follow_symlinks=False) and entry.name not in _SKIP_DIRS:
            files.extend(_candidates(Path(entry.path), depth - 1))
    return files


def appimage_app(ctx: Context, path: Path, user: str) -> App | None:
    """Return the App of `path` if it is an AppImage, else None. Raise OSError if unreadable."""
    with open(path, "rb") as handle:
        kind = appimage_type(handle.read(11))
    if not kind:
        return None
    name, version = name_version(path.name)
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
        return None

    def collect(self, ctx: Context) -> Collected:
        folders = [(ctx.path(d), depth, "") for d, depth in SYSTEM_DIRS]
        folders += [(home / d, depth, user) for user, home in home_dirs(ctx) for d, depth in USER_DIRS]
        result = Collected()
        seen: set[Path] = set()
        for folder, depth, user in folders:
            try:
                paths = _candidates(folder, depth)
            except OSError as exc:
                result.errors.append(CollectorError("appimage", f"{folder}: {exc.strerror or exc}"))
                continue
            for path in paths:
                if path in seen:
                    continue
                seen.add(path)
                try:
                    app = appimage_app(ctx, path, user)
                except OSError as exc:
                    result.errors.append(CollectorError("appimage", f"{path}: {exc.strerror or exc}"))
                    continue
                if app is not None:
                    result.apps.append(app)
        return result
