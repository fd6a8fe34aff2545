"""Installed snaps, from snapd's on-disk state (snapd need not be running).

What snapd keeps, and what is read here (format from canonical/snapd: overlord/snapstate,
snap/info.go SideInfo, asserts/fsbackstore.go):

- /var/lib/snapd/state.json: `data.snaps.<instance>` with `sequence` (a list of SideInfo:
  `name`, `snap-id`, `revision`, `channel`, …), `current` (the revision in use), `active`,
  `type`, `tracking-channel`;
- the snap itself: mounted at /snap/<instance>/<revision>/meta/snap.yaml (`version:`), or the
  squashfs blob /var/lib/snapd/snaps/<instance>_<revision>.snap when not mounted (read with
  `unsquashfs -cat`, e.g. on an image);
- the publisher: the snap-declaration assertion
  (assertions/asserts-v0/snap-declaration/16/<snap-id>/active, header `publisher-id`) and that
  account's assertion (asserts-v0/account/<account-id>/active, `username`, `display-name`).

When state.json is missing or unreadable, the snaps mounted under /snap are listed instead, so
a damaged state file costs the revision bookkeeping, not the inventory.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from urllib.parse import quote_plus

from agent.inventory.base import Collected, Context, record_error
from agent.inventory.preconditions import SNAP, SNAP_MOUNTS, SNAP_STATE
from agent.inventory.reading import DATABASE_LIMIT, DanglingLinkError, exists, folder_entries, host_path, link_target, read_bytes, read_text
from agent.log import log_event
from agent.model import App, CollectorError
from agent.runner import CommandError

logger = logging.getLogger(__name__)

BLOB_DIR = "/var/lib/snapd/snaps"
ASSERTIONS = "/var/lib/snapd/assertions/asserts-v0"
SERIES = "16"
UNSQUASHFS_TIMEOUT = 30.0
# Compiled by `re` on first use (and cached there): only a snap found is read with it, and
# compiling it at import was part of every full check's start-up.
_YAML_KEY = r"(?m)^(name|version|title):[ \t]*(.*?)[ \t]*$"


def snap_yaml_facts(text: str) -> dict[str, str]:
    """Given meta/snap.yaml, return its top-level `name`, `version` and `title` (quotes removed).

    Why not a YAML parser: only three flat scalar keys are needed, and a snap.yaml from an
    untrusted image should not be fed to a full YAML loader.
    """
    facts: dict[str, str] = {}
    for key, value in re.findall(_YAML_KEY, text):
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        facts.setdefault(key, value)
    return facts


def assertion_headers(text: str) -> dict[str, str]:
    """Given an assertion (headers, blank line, body/signature), return its single-line headers."""
    headers: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith(" "):
            headers[key] = value.strip()
    return headers


def _read(ctx: Context, path: Path) -> str:
    try:
        return read_text(path, root=ctx.root)
    except OSError:
        return ""


def publisher(ctx: Context, snap_id: str) -> str:
    """Return the publisher of `snap_id` (account username, else display name, else account id)."""
    if not snap_id:
        return ""
    base = ctx.path(ASSERTIONS)
    declaration = assertion_headers(_read(ctx, base / "snap-declaration" / SERIES / quote_plus(snap_id) / "active"))
    account_id = declaration.get("publisher-id", "")
    if not account_id:
        return ""
    account = assertion_headers(_read(ctx, base / "account" / quote_plus(account_id) / "active"))
    return account.get("username") or account.get("display-name") or account_id


def snap_yaml(ctx: Context, instance: str, revision: str) -> str:
    """Return meta/snap.yaml of a snap revision: from its mount, else from its blob (needs
    `unsquashfs`), else ""."""
    for mount in SNAP_MOUNTS:
        text = _read(ctx, ctx.path(f"{mount}/{instance}/{revision}/meta/snap.yaml"))
        if text:
            return text
    if ctx.runner.which("unsquashfs") is None:
        return ""
    blob = ctx.path(f"{BLOB_DIR}/{instance}_{revision}.snap")
    try:
        found = host_path(blob, root=ctx.root)  # unsquashfs opens it by name: links resolved inside the root first
        return ctx.runner.run("unsquashfs", ["-cat", str(found), "meta/snap.yaml"], timeout=UNSQUASHFS_TIMEOUT).stdout
    except FileNotFoundError:
        return ""
    except (CommandError, OSError) as exc:
        log_event(logger, logging.WARNING, "snap.blob_unreadable", app=instance, path=str(blob), error=str(exc))
        return ""


def snap_app(ctx: Context, instance: str, state: dict) -> App | None:
    """Given one `data.snaps` entry of state.json, return the App of its current revision."""
    current = str(state.get("current") or "")
    sequence = state.get("sequence") or []
    side = next((s for s in sequence if isinstance(s, dict) and str(s.get("revision")) == current), None)
    if not current or side is None:
        return None
    facts = snap_yaml_facts(snap_yaml(ctx, instance, current))
    name = str(side.get("name") or facts.get("name") or instance)
    snap_id = str(side.get("snap-id") or "")
    extra = {
        "revision": current, "snap_id": snap_id, "type": str(state.get("type") or ""),
        "channel": str(state.get("tracking-channel") or state.get("channel") or side.get("channel") or ""),
        "active": "true" if state.get("active") else "false",
    }
    return App(
        source="snap", id=instance, name=str(side.get("title") or facts.get("title") or name),
        version=facts.get("version", ""), publisher=publisher(ctx, snap_id) or str(side.get("developer") or ""),
        path=f"/snap/{instance}/{current}",
        aliases=(name,) if name != instance else (),
        extra=tuple(sorted((k, v) for k, v in extra.items() if v)),
    )


def mounted_apps(ctx: Context) -> list[App]:
    """Return the snaps mounted under /snap (`current` link → revision), without snapd's state."""
    apps = []
    for mount in SNAP_MOUNTS:
        base = ctx.path(mount)
        if not exists(base, root=ctx.root, folder=True):
            continue
        for current in (base / name / "current" for name, _ in folder_entries(base, root=ctx.root)):
            try:
                revision = os.path.basename(link_target(current, root=ctx.root))
            except OSError:  # no `current` link: not a snap
                continue
            facts = snap_yaml_facts(_read(ctx, current / "meta/snap.yaml"))
            if not facts:
                continue
            instance = current.parent.name
            apps.append(App(
                source="snap", id=instance, name=facts.get("title") or facts.get("name") or instance,
                version=facts.get("version", ""), path=f"{mount}/{instance}/{revision}",
                extra=(("revision", revision),),
            ))
        if apps:
            break
    return apps


class SnapCollector:
    """Snaps installed through snapd."""

    name = "snap"
    live_only = False

    def unavailable(self, ctx: Context) -> str | None:
        return SNAP(ctx)

    def collect(self, ctx: Context) -> Collected:
        path = ctx.path(SNAP_STATE)
        try:
            state = json.loads(read_bytes(path, DATABASE_LIMIT, root=ctx.root))
            snaps = ((state.get("data") if isinstance(state, dict) else None) or {}).get("snaps") or {}
            if not isinstance(snaps, dict):
                raise TypeError("data.snaps is not an object")
        except (OSError, ValueError, TypeError, AttributeError, RecursionError) as exc:
            if isinstance(exc, FileNotFoundError) and not isinstance(exc, DanglingLinkError):
                return Collected(apps=mounted_apps(ctx))
            detail = exc.strerror if isinstance(exc, OSError) else f"unreadable snapd state ({type(exc).__name__}: {exc})"
            return Collected(
                apps=mounted_apps(ctx),
                errors=[CollectorError("snap", f"{path}: {detail}; listed the mounted snaps instead")],
            )
        result = Collected()
        for instance, entry in sorted(snaps.items()):
            try:
                app = snap_app(ctx, instance, entry) if isinstance(entry, dict) else None
            except Exception as exc:  # noqa: BLE001 - one bad snap is one error, the others still count
                result.errors.append(record_error("snap", f"{path}: snap {instance!r}", exc))
                continue
            if app is not None:
                result.apps.append(app)
        return result
