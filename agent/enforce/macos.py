"""Quarantine of macOS app bundles: move the .app out of reach, and record where it went.

Moving rather than deleting keeps the action reversible (an exception approved later, a wrong
match), and a bundle that is not in /Applications cannot be launched from Launchpad or Spotlight
by path. Each move is one JSON line in `manifest.jsonl` inside the quarantine folder, written
before the move so an interrupted run still says where a bundle was going.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from agent.model import App

MANIFEST = "manifest.jsonl"


class QuarantineRefused(ValueError):
    """The path is not a bundle that may be moved; nothing was changed."""


def quarantine_target(bundle: Path, folder: Path, now: datetime) -> Path:
    """Return where `bundle` goes inside the quarantine folder: a time-stamped name, so the
    same app quarantined twice (reinstalled in between) keeps both copies."""
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return folder / f"{stamp}-{bundle.name}"


def quarantine_bundle(bundle: Path, folder: Path, app: App, now: datetime | None = None) -> Path:
    """Move an .app bundle into the quarantine folder and return its new path.

    Raise QuarantineRefused if `bundle` is not an existing .app folder, is a symbolic link, or
    contains the quarantine folder; OSError if the move fails (the manifest line then says so).
    """
    now = now or datetime.now(timezone.utc)
    if bundle.suffix != ".app" or bundle.is_symlink() or not bundle.is_dir():
        raise QuarantineRefused(f"{bundle}: not an .app bundle folder")
    folder = folder.resolve()
    if folder.is_relative_to(bundle.resolve()):
        raise QuarantineRefused(f"{bundle}: the quarantine folder {folder} is inside it")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = quarantine_target(bundle, folder, now)
    record = {"time": now.isoformat(), "from": str(bundle), "to": str(target), "id": app.id,
              "name": app.name, "version": app.version, "user": app.user}
    _append(folder / MANIFEST, {**record, "state": "moving"})
    try:
        shutil.move(str(bundle), str(target))
    except OSError as exc:
        _append(folder / MANIFEST, {**record, "state": "failed", "error": exc.strerror or str(exc)})
        raise
    os.chmod(target, 0o700)  # not runnable by its former users from the quarantine folder
    _append(folder / MANIFEST, {**record, "state": "moved"})
    return target


def _append(path: Path, record: dict) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
