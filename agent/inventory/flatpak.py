"""Flatpak apps, read from the installations on disk (no flatpak process, no D-Bus).

Layout, as flatpak 1.x deploys (checked against flatpak 1.14 from Debian, which the integration
test runs for real):

    <installation>/app/<app-id>/<arch>/<branch>/active -> <commit>
    <installation>/app/<app-id>/<arch>/<branch>/<commit>/metadata      keyfile, [Application] name=…
    <installation>/app/<app-id>/<arch>/<branch>/<commit>/deploy        GVariant (ssasta{sv}); the
                                                                       first string is the origin remote
    <installation>/app/<app-id>/<arch>/<branch>/<commit>/files/share/app-info/xmls/<app-id>.xml.gz
    <installation>/app/<app-id>/<arch>/<branch>/<commit>/files/share/metainfo/<app-id>.metainfo.xml

Installations: the system one (/var/lib/flatpak), extra ones declared in
/etc/flatpak/installations.d/*.conf (`Path=`), and every user's ~/.local/share/flatpak. The name,
version and developer come from the composed AppStream data (what `flatpak list` shows) or else
the app's own metainfo/appdata file.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from agent.inventory.base import Collected, Context, home_dirs, record_error
from agent.inventory.preconditions import FLATPAK_INSTALLATIONS_CONF, FLATPAK_SYSTEM_DIR, FLATPAK_USER_DIR, NO_FLATPAK, flatpak_installation
from agent.inventory.reading import RECORD_LIMIT, exists, folder_entries, link_target, read_bytes, read_text
from agent.log import log_event
from agent.model import App, CollectorError

if TYPE_CHECKING:
    import configparser
    import xml.etree.ElementTree as ET

logger = logging.getLogger(__name__)

_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def read_keyfile(text: str, what: str) -> configparser.ConfigParser:
    """Given a GLib keyfile's text, return it parsed. Raise ValueError naming `what` if malformed."""
    import configparser  # the parsers load when flatpak is installed, not on every check

    parser = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=what)
    except configparser.Error as exc:
        raise ValueError(f"{what}: not a valid keyfile: {' '.join(str(exc).split())}") from None
    return parser


def deploy_origin(data: bytes) -> str:
    """Given a `deploy` file (GVariant `(ssasta{sv})`), return the origin remote.

    The first member of a GVariant tuple starts at offset 0 and a string is NUL-terminated, so the
    origin is the bytes before the first NUL; no general GVariant decoder is needed.
    """
    origin, sep, _ = data.partition(b"\0")
    return origin.decode("utf-8", "replace") if sep else ""


def appstream_facts(root: ET.Element, app_id: str) -> dict[str, str]:
    """Given an AppStream document (a <components> collection or one <component>), return the
    unlocalized name, newest release version and developer of `app_id`."""
    components = [root] if root.tag == "component" else root.findall("component")
    for component in components:
        if (component.findtext("id") or "").strip().removesuffix(".desktop") != app_id.removesuffix(".desktop"):
            continue
        names = [n.text or "" for n in component.findall("name") if _LANG not in n.attrib]
        releases = component.findall("releases/release")
        developer = component.findtext("developer/name") or component.findtext("developer_name") or ""
        return {
            "name": names[0].strip() if names else "",
            "version": (releases[0].get("version") or "") if releases else "",
            "publisher": developer.strip(),
        }
    return {}


def _appstream(files: Path, app_id: str, root: Path) -> dict[str, str]:
    """Return the app's AppStream facts: composed data first, as flatpak itself reads it."""
    composed = files / "share/app-info/xmls" / f"{app_id}.xml.gz"
    candidates = [composed] + [
        files / "share" / folder / f"{app_id}{suffix}"
        for folder in ("metainfo", "appdata") for suffix in (".metainfo.xml", ".appdata.xml")
    ]
    import xml.etree.ElementTree as ET
    import zlib

    for path in candidates:
        if not exists(path, root=root):
            continue
        try:
            raw = read_bytes(path, root=root)
            raw = _gunzip(raw) if path.suffix == ".gz" else raw
            facts = appstream_facts(ET.fromstring(raw), app_id)
        except (OSError, EOFError, zlib.error, ET.ParseError, ValueError, LookupError) as exc:
            log_event(logger, logging.WARNING, "flatpak.appstream_unreadable", app=app_id, path=str(path), error=str(exc))
            continue
        if facts:
            return facts
    return {}


def _gunzip(data: bytes) -> bytes:
    """Return gzip'd AppStream data decompressed, refusing a bomb: at most RECORD_LIMIT × 16 bytes."""
    import zlib

    out = zlib.decompressobj(16 + zlib.MAX_WBITS)
    limit = RECORD_LIMIT * 16
    raw = out.decompress(data, limit)
    if out.unconsumed_tail:
        raise ValueError(f"decompresses to more than {limit} bytes")
    return raw


def deployed_app(deploy: Path, app_id: str, arch: str, branch: str, user: str, installation: str,
                 device_path: str, root: Path = Path("/")) -> App:
    """Given an app's deployed commit folder under `root` (and its path as seen on the device),
    return its App. Raise ValueError or OSError if its metadata cannot be read (a broken deployment)."""
    what = str(deploy / "metadata")
    meta = read_keyfile(read_text(deploy / "metadata", root=root), what)
    if not meta.has_section("Application"):
        raise ValueError(f"{what}: no [Application] group")
    try:
        origin = deploy_origin(read_bytes(deploy / "deploy", root=root))
    except OSError:
        origin = ""
    facts = _appstream(deploy / "files", app_id, root)
    extra = {
        "arch": arch, "branch": branch, "origin": origin, "installation": installation,
        "commit": deploy.name, "runtime": meta.get("Application", "runtime", fallback=""),
    }
    return App(
        source="flatpak", id=app_id, name=facts.get("name") or app_id, version=facts.get("version", ""),
        publisher=facts.get("publisher", ""), path=device_path, user=user,
        aliases=(f"app/{app_id}/{arch}/{branch}",),
        extra=tuple(sorted((k, v) for k, v in extra.items() if v)),
    )


def installations(ctx: Context) -> list[tuple[Path, str, str]]:
    """Return (folder, owning user, installation name) of every installation under the root."""
    found = [(ctx.path(FLATPAK_SYSTEM_DIR), "", "system")]
    conf_dir = ctx.path(FLATPAK_INSTALLATIONS_CONF)
    if exists(conf_dir, root=ctx.root, folder=True):
        for conf in _names(conf_dir, ctx.root, ".conf"):
            try:
                parser = read_keyfile(read_text(conf, root=ctx.root), str(conf))
            except (OSError, ValueError) as exc:
                log_event(logger, logging.WARNING, "flatpak.installation_conf_unreadable", path=str(conf), error=str(exc))
                continue
            for section in parser.sections():
                path = parser.get(section, "Path", fallback="")
                if section.startswith("Installation ") and path:
                    found.append((ctx.path(path), "", section.removeprefix("Installation ").strip('"')))
    found += [(home / FLATPAK_USER_DIR, user, "user") for user, home in home_dirs(ctx)]
    return [(folder, user, name) for folder, user, name in found if exists(folder / "app", root=ctx.root, folder=True)]


class FlatpakCollector:
    """Flatpak apps of the system installation(s) and of every user."""

    name = "flatpak"
    live_only = False

    def unavailable(self, ctx: Context) -> str | None:
        return flatpak_installation(ctx) or (None if installations(ctx) else NO_FLATPAK)

    def collect(self, ctx: Context) -> Collected:
        result = Collected()
        for folder, user, installation in installations(ctx):
            try:
                deployments = _deployments(folder / "app", ctx.root)
            except OSError as exc:
                result.errors.append(CollectorError("flatpak", f"{folder}: {exc.strerror or exc}"))
                continue
            for app_id, arch, branch, active in deployments:
                try:
                    deploy = _active_deploy(ctx, active)
                    device_path = "/" + str(deploy.relative_to(ctx.root)).lstrip("/")
                    result.apps.append(deployed_app(deploy, app_id, arch, branch, user, installation, device_path, ctx.root))
                except ValueError as exc:
                    result.errors.append(CollectorError("flatpak", str(exc)))
                except Exception as exc:  # noqa: BLE001 - one broken deployment is one error, not the collector's loss
                    result.errors.append(record_error("flatpak", active, exc))
        return result


def _active_deploy(ctx: Context, active: Path) -> Path:
    """Return the commit folder an `active` link points to, inside the root (flatpak writes a
    relative link; an absolute one is read as a path on the device, not on this host)."""
    target = link_target(active, root=ctx.root)
    return ctx.path(target) if os.path.isabs(target) else active.parent / target


def _deployments(apps: Path, root: Path) -> list[tuple[str, str, str, Path]]:
    """Return (app id, arch, branch, active link) of every deployed ref under an `app` folder."""
    found = []
    for app_id in _folders(apps, root):
        for arch in _folders(apps / app_id, root):  # not `current`, flatpak's link to the arch/branch in use
            for branch in _folders(apps / app_id / arch, root):
                names = dict(folder_entries(apps / app_id / arch / branch, root=root))
                if "active" in names:
                    found.append((app_id, arch, branch, apps / app_id / arch / branch / "active"))
    return found


def _folders(folder: Path, root: Path) -> list[str]:
    """Return the names of the real folders in `folder` (flatpak links none of the app, arch and
    branch folders; a link there is no deployment)."""
    return [name for name, info in folder_entries(folder, root=root) if stat.S_ISDIR(info.st_mode)]


def _names(folder: Path, root: Path, suffix: str) -> list[Path]:
    """Return the paths in `folder` whose names end in `suffix` (not hidden ones, as a glob)."""
    return [folder / name for name, _ in folder_entries(folder, root=root)
            if name.endswith(suffix) and not name.startswith(".")]
