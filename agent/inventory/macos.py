"""macOS apps: .app bundles (their Contents/Info.plist) and Homebrew casks, live or mounted.

Bundles are looked for where osquery's `apps` table looks (/Applications and each user's
~/Applications, one folder level deep) and, beyond it, in /Users/Shared/Applications and each
user's Desktop and Downloads, where an app dragged out of a downloaded disk image often stays.
Users are found by their folders under /Users, so people who are not logged on count too.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any, Iterator

from agent.inventory.base import Collected, Context, record_error
from agent.inventory.preconditions import MACOS
from agent.inventory.reading import DanglingLinkError, exists, folder_entries, read_bytes
from agent.model import App, CollectorError

SYSTEM_DIRS = ("/Applications", "/Users/Shared/Applications")
USER_DIRS = ("Applications", "Desktop", "Downloads")
CASKROOMS = ("/opt/homebrew/Caskroom", "/usr/local/Caskroom")
NOT_USERS = frozenset({"shared", "guest"})
MARKERS = ("Applications", "System/Library/CoreServices/SystemVersion.plist")
"""What makes a mounted folder a macOS volume (either is enough)."""


class PlistError(Exception):
    """An Info.plist that cannot be read or parsed; the message names the bundle."""


def bundle_app(bundle: Path, info: dict[str, Any], *, path: str, user: str) -> App:
    """Given a bundle and its parsed Info.plist, return its App (id = CFBundleIdentifier, or the
    bundle's file name for the rare bundle without one)."""
    name = _string(info, "CFBundleDisplayName") or _string(info, "CFBundleName") or bundle.stem
    ident = _string(info, "CFBundleIdentifier")
    short = _string(info, "CFBundleShortVersionString")
    build = _string(info, "CFBundleVersion")
    extra = {"kind": "bundle", "bundle_version": build, "executable": _string(info, "CFBundleExecutable")}
    return App(
        source="macos", id=ident or bundle.name, name=name, version=short or build, path=path, user=user,
        aliases=(bundle.stem,) if bundle.stem != name else (),
        extra=tuple(sorted((k, v) for k, v in extra.items() if v)),
    )


def _string(info: dict[str, Any], key: str) -> str:
    value = info.get(key)
    return value.strip() if isinstance(value, str) else ""


def read_info_plist(bundle: Path, root: Path = Path("/")) -> dict[str, Any]:
    """Return the bundle's Contents/Info.plist (binary or XML), read inside `root`. Raise PlistError
    naming the bundle if it is missing, unreadable, refused, malformed or not a dictionary."""
    import plistlib  # with the XML parser it uses: only on a macOS volume
    from xml.parsers.expat import ExpatError

    plist = bundle / "Contents" / "Info.plist"
    try:
        info = plistlib.loads(read_bytes(plist, root=root))
    except DanglingLinkError as exc:
        raise PlistError(f"{plist}: {exc.strerror}") from None
    except FileNotFoundError:
        raise PlistError(f"{bundle}: no Contents/Info.plist") from None
    except OSError as exc:
        raise PlistError(f"{plist}: {exc.strerror or exc}") from None
    except (plistlib.InvalidFileException, ExpatError, ValueError, TypeError, IndexError, AttributeError,
            LookupError, OverflowError, RecursionError) as exc:  # LookupError: an unknown declared encoding
        raise PlistError(f"{plist}: malformed property list ({type(exc).__name__})") from None
    if not isinstance(info, dict):
        raise PlistError(f"{plist}: not a dictionary")
    return info


def find_bundles(folder: Path, root: Path = Path("/"), errors: list[str] | None = None) -> Iterator[Path]:
    """Yield the .app bundles in `folder` and in its subfolders one level down (such as
    /Applications/Utilities), never looking inside a bundle. A folder that is refused or cannot
    be listed is one line in `errors`."""
    for name in _subfolders(folder, root, errors):
        if name.endswith(".app"):
            yield folder / name
        elif not name.startswith("."):
            yield from (folder / name / inner for inner in _subfolders(folder / name, root, errors)
                        if inner.endswith(".app"))


def _subfolders(folder: Path, root: Path, errors: list[str] | None = None) -> list[str]:
    """Return the names of the real folders (not links) in `folder`, found inside `root`; [] when
    there is none, or it is a link to nothing inside the root (a folder that is refused or
    unreadable is also a line in `errors`)."""
    try:
        return [name for name, info in folder_entries(folder, root=root) if stat.S_ISDIR(info.st_mode)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        if errors is not None:
            errors.append(f"{folder}: {exc.strerror or exc}")
        return []


def user_homes(ctx: Context) -> list[tuple[str, Path]]:
    """Return (user, home) for each folder under /Users (not Shared), logged on or not."""
    users = ctx.path("/Users")
    return [(name, users / name) for name in _subfolders(users, ctx.root)
            if name.casefold() not in NOT_USERS and not name.startswith(".")]


def search_folders(ctx: Context) -> list[tuple[Path, str]]:
    """Return (folder, user) for every folder searched for bundles ("" for system folders)."""
    folders = [(ctx.path(d), "") for d in SYSTEM_DIRS]
    folders += [(home / d, user) for user, home in user_homes(ctx) for d in USER_DIRS]
    return folders


def cask_apps(ctx: Context) -> list[App]:
    """Return the Homebrew casks installed under each Caskroom: token and installed version(s)."""
    apps = []
    for room in CASKROOMS:
        for token in _subfolders(ctx.path(room), ctx.root):
            if token.startswith("."):
                continue
            versions = [v for v in _subfolders(ctx.path(room) / token, ctx.root) if not v.startswith(".")]
            apps.append(App(
                source="brew-cask", id=token, name=token, version=",".join(versions),
                path=f"{room}/{token}", extra=(("kind", "cask"),),
            ))
    return apps


class MacosCollector:
    """.app bundles and Homebrew casks of a macOS system, live or mounted."""

    name = "macos"
    live_only = False

    def unavailable(self, ctx: Context) -> str | None:
        if ctx.live:
            return MACOS(ctx)
        if not any(exists(ctx.path(m), root=ctx.root) for m in MARKERS):
            return f"no macOS volume at {ctx.root} (no Applications folder or SystemVersion.plist)"
        return None

    def collect(self, ctx: Context) -> Collected:
        result = Collected()
        seen: set[Path] = set()
        unlisted: list[str] = []
        for folder, user in search_folders(ctx):
            for bundle in find_bundles(folder, ctx.root, unlisted):
                if bundle in seen:
                    continue
                seen.add(bundle)
                try:
                    info = read_info_plist(bundle, ctx.root)
                    result.apps.append(bundle_app(bundle, info, path=_on_device(ctx, str(bundle)), user=user))
                except PlistError as exc:
                    result.errors.append(CollectorError(self.name, _on_device(ctx, str(exc))))
                except Exception as exc:  # noqa: BLE001 - one bad bundle is one error, never the collector's loss
                    result.errors.append(record_error(self.name, _on_device(ctx, str(bundle)), exc))
        result.errors.extend(CollectorError(self.name, _on_device(ctx, line)) for line in unlisted)
        result.apps.extend(cask_apps(ctx))
        return result


def _on_device(ctx: Context, text: str) -> str:
    """Return a path (or a message starting with one) as the device sees it, without the root."""
    root = str(ctx.root).rstrip("/")
    return "/" + text[len(root):].lstrip("/") if root and text.startswith(root + "/") else text
