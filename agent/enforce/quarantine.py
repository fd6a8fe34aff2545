"""Quarantine: unpackaged installs the scan found (AppImages, macOS .app bundles) are moved into
a root-only folder with a manifest, never deleted, so a mistaken ban is undone with
`appban quarantine restore ID`. What may be moved at all is decided by agent/enforce/evidence.py
(the planner, and again just before the move); this module only moves and restores.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from agent.errors import UserError
from agent.atomic import write_atomic
from agent.enforce.files import on_root

MANIFEST = "manifest.json"
STORED_NAME_MAX = 200
"""Stored names are `<index>-<original name>`, cut so they stay under NAME_MAX (255)."""


class QuarantineError(UserError):
    """A quarantine that cannot be done or undone; the message is one line."""


@dataclass(frozen=True)
class Record:
    """One quarantined install: where its files came from and where they are kept."""

    id: str
    entry: str
    app: str
    time: str
    items: tuple[dict, ...]
    """Each: original (path on the device), stored (name inside the record), mode, uid, gid."""


def quarantine(root: str, store: Path, paths: list[str], entry: str, app: str) -> Record:
    """Given device paths (under `root`), move them into a new record in `store` and return it.

    Raise QuarantineError if nothing exists to move.
    """
    present = [p for p in paths if os.path.lexists(on_root(root, p))]
    if not present:
        raise QuarantineError(f"nothing to quarantine: {', '.join(paths)} not found")
    store.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(store, 0o700)
    record_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    folder = store / record_id
    folder.mkdir(mode=0o700)
    record = Record(record_id, entry, app, datetime.now(timezone.utc).isoformat(), ())
    for index, original in enumerate(present):
        source = on_root(root, original)
        st = os.lstat(source)
        stored = f"{index}-{os.path.basename(original)}"[:STORED_NAME_MAX]
        try:
            shutil.move(source, folder / stored)
        except OSError:
            if not record.items:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        # The manifest is rewritten after every move, so what was moved before a later move
        # fails (or the agent dies) is still listed and restorable.
        record = replace(record, items=(*record.items, {"original": original, "stored": stored,
                                                        "mode": st.st_mode & 0o7777, "uid": st.st_uid,
                                                        "gid": st.st_gid}))
        write_atomic(folder / MANIFEST, (json.dumps(_to_dict(record), indent=2) + "\n").encode(), 0o600,
                     parents=True)
    return record


def records(store: Path) -> list[Record]:
    """Return every quarantine record in `store`, oldest first."""
    if not store.is_dir():
        return []
    found = []
    for folder in sorted(store.iterdir()):
        manifest = folder / MANIFEST
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
                found.append(Record(data["id"], data["entry"], data["app"], data["time"], tuple(data["items"])))
            except (ValueError, KeyError, TypeError) as exc:
                raise QuarantineError(f"quarantine record {manifest}: unreadable manifest ({exc})") from None
    return found


def restore(root: str, store: Path, record_id: str) -> Record:
    """Move a record's files back where they were (owner and mode as before) and drop the record.

    Raise QuarantineError if the id is unknown or something now occupies an original path.
    """
    record = next((r for r in records(store) if r.id == record_id), None)
    if record is None:
        raise QuarantineError(f"no quarantine record {record_id!r} (see `appban quarantine list`)")
    for item in record.items:
        if os.path.lexists(on_root(root, item["original"])):
            raise QuarantineError(f"cannot restore {record_id}: {item['original']} exists again")
    folder = store / record_id
    for item in record.items:
        destination = on_root(root, item["original"])
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        shutil.move(folder / item["stored"], destination)
        os.lchown(destination, item["uid"], item["gid"])
        if not os.path.islink(destination):
            os.chmod(destination, item["mode"])
    shutil.rmtree(folder)
    return record


def _to_dict(record: Record) -> dict:
    return {"id": record.id, "entry": record.entry, "app": record.app, "time": record.time,
            "items": list(record.items)}
