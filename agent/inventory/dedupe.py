"""Fold launchers into the app they start, so one installed app is counted (and reported) once.

A desktop launcher is a second view of an app that a package, a Flatpak, a snap or an AppImage
already describes. The desktop collector records its `owner` (`dpkg:firefox-esr`,
`flatpak:org.mozilla.firefox`, `snap:firefox`); a launcher whose executable is an AppImage found
by the appimage collector is owned by that AppImage. The rule, a pure function of the records:

- an owned launcher whose owner is in the inventory is dropped, and the owner's record keeps
  the launcher's path (`extra.launchers`) and what the matcher read on the launcher: its
  program's base name (`extra.launcher_programs`, for `executables` rules); when the owner has
  no display name of its own (its name is its id, as for packages) it takes the launcher's
  `Name`, so `names` rules still see it, and keeps the name it had (`extra.former_names`), so a
  banned app never disappears from the matcher by being folded;
- when the owner already has a different display name, the launcher stays, marked with its
  `owner`, because a `names` rule may match only the launcher's name (e.g. one package with
  several launchers); the matcher must see every name;
- a launcher whose owner was not collected (say `--source desktop`) stays as it is;
- a user's launcher is folded only into a record of that same user (their Flatpak, their
  AppImage): its `Name=` is text the user chose, so it must never rename a system-wide package or
  AppImage — `Name=TikTok` with `Exec=/usr/bin/nginx` would otherwise make root uninstall nginx.
  It stays a launcher, which is evidence for the report only.
"""

from __future__ import annotations

import os
from dataclasses import replace

from agent.model import App

TYPE_CHECKING = False  # typing for type checkers only: importing it costs ~14 M instructions of a check
if TYPE_CHECKING:
    from typing import Sequence

Key = tuple[str, str, str, str]


def _key(app: App) -> Key:
    return (app.device, app.source, app.id, app.user)


def _owner_key(launcher: App, by_key: dict[Key, int], by_path: dict[tuple[str, str], int]) -> int | None:
    """Return the index of the record that owns this launcher, or None."""
    owner = launcher.extra_value("owner")
    if owner:
        source, _, ident = owner.partition(":")
        for user in (launcher.user, ""):
            index = by_key.get((launcher.device, source, ident, user))
            if index is not None:
                return index
        return None
    return by_path.get((launcher.device, launcher.path)) if launcher.path else None


def merge_launchers(apps: Sequence[App]) -> list[App]:
    """Given every collected App, return them with launchers folded into their owners (see above)."""
    merged = list(apps)
    if not any(app.source == "desktop" for app in merged):  # nothing to fold: no index of 100,000 packages
        return merged  # (and no list of indexes either: enumerating them costs twice this test)
    launchers = [index for index, app in enumerate(merged) if app.source == "desktop"]
    by_key, by_path = _owners_index(merged, {merged[index].extra_value("owner").partition(":")[2] for index in launchers})
    dropped = []
    for index in launchers:
        launcher = merged[index]
        owner_index = _owner_key(launcher, by_key, by_path)
        if owner_index is None:
            continue
        owner = merged[owner_index]
        if launcher.user and owner.user != launcher.user:
            continue
        same_name = launcher.name.casefold() == owner.name.casefold()
        if not same_name and owner.name and owner.name != owner.id:
            continue
        extra = dict(owner.extra)
        _append(extra, "launchers", launcher.extra_value("launcher"))
        _append(extra, "launcher_programs", os.path.basename(launcher.path))
        if not same_name and owner.name:
            _append(extra, "former_names", owner.name)
        merged[owner_index] = replace(
            owner, name=owner.name if same_name else launcher.name, extra=tuple(sorted(extra.items())),
        )
        dropped.append(index)
    for index in reversed(dropped):
        del merged[index]
    return merged


def _owners_index(apps: list[App], named: set[str]) -> tuple[dict[Key, int], dict[tuple[str, str], int]]:
    """Return the index of the records a launcher may fold into: by key (the first record but a
    launcher or a process of each key), for the ids in `named` (those the launchers' owners
    name), and by path, of the AppImages (a launcher without an owner folds into the AppImage it
    starts).

    Why only those ids: a check's few launchers name a few packages, and keying each of the
    ~1,000 records (a tuple and a dict entry each) was 4 M instructions of a full check; an id
    test per record is a tenth of that. Lookups of the launchers' owners find what a whole index
    would find.
    """
    by_key: dict[Key, int] = {}
    by_path: dict[tuple[str, str], int] = {}
    for index, app in enumerate(apps):
        if app.id in named and app.source not in ("desktop", "process"):
            by_key.setdefault(_key(app), index)
        if app.source == "appimage":
            by_path.setdefault((app.device, app.path), index)
    return by_key, by_path


def _append(extra: dict[str, str], key: str, value: str) -> None:
    """Add `value` to the comma-separated list under `key`, once."""
    values = [v for v in extra.get(key, "").split(",") if v]
    if value and value not in values:
        extra[key] = ",".join((*values, value))
