"""Windows apps from the registry: Add/Remove Programs entries and Store (MSIX) packages.

Where osquery's `programs` table reads only the hives that are loaded, this collector also reads
the NTUSER.DAT and UsrClass.dat files of users who are not logged on, so per-user installs
(CapCut, WPS Office) and per-user Store apps (TikTok) of every profile are found.

One parsing path serves two readers behind a three-method interface (open a key, list its
subkeys, read its values): `HiveFileReader` reads hive files with regipy (a mounted disk or
image under `--root`, or the hives of users who are not logged on), `LiveRegistryReader` reads
the running registry with `winreg`, which only exists on Windows and is imported lazily.
"""

from __future__ import annotations

import importlib.util
import re
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

from agent.inventory.base import Collected, Context
from agent.inventory.preconditions import WINDOWS
from agent.inventory.reading import DATABASE_LIMIT, exists, folder_entries, open_regular, read_bytes
from agent.model import App, CollectorError
from agent.records import dataclass

UNINSTALL = r"Microsoft\Windows\CurrentVersion\Uninstall"
MACHINE_UNINSTALL = ((UNINSTALL, "64-bit"), (rf"WOW6432Node\{UNINSTALL}", "32-bit"))
"""Uninstall keys inside the SOFTWARE hive, with the registry view each belongs to."""
USER_UNINSTALL = rf"Software\{UNINSTALL}"
"""Per-user installs, inside NTUSER.DAT (HKU\\<SID>)."""
USER_PACKAGES = r"Local Settings\Software\Microsoft\Windows\CurrentVersion\AppModel\Repository\Packages"
"""Per-user Store packages, inside UsrClass.dat (HKCU\\Software\\Classes is that hive's root)."""
PROVISIONED = r"Microsoft\Windows\CurrentVersion\Appx\AppxAllUserStore\Applications"
"""Packages provisioned for every (new) user, inside the SOFTWARE hive."""
PROFILE_LIST = r"Microsoft\Windows NT\CurrentVersion\ProfileList"

SOFTWARE_HIVE = ("Windows", "System32", "config", "SOFTWARE")
USER_HIVE = ("NTUSER.DAT",)
CLASSES_HIVE = ("AppData", "Local", "Microsoft", "Windows", "UsrClass.dat")
NOT_USERS = frozenset({"default", "default user", "all users", "public", "defaultapppool"})
"""Profile folders that are templates or links, not people."""

UPDATE_RELEASE_TYPES = frozenset({"update", "hotfix", "security update", "service pack"})
_GUID = re.compile(r"^\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}$")


class HiveError(Exception):
    """A hive that cannot be read (missing, not a hive, damaged); the message names the file."""


class RegistryReader(Protocol):
    """The three things the parser needs from a registry, whichever way it is read."""

    label: str
    """What the reader reads, for error messages and `extra` (a file path or `HKLM\\SOFTWARE`)."""

    def open(self, path: str) -> Any | None:
        """Return a handle on the key at `path` (backslashes, relative to the hive root), or None."""

    def subkeys(self, key: Any) -> Iterator[tuple[str, Any]]:
        """Yield (name, handle) for each subkey of `key`."""

    def values(self, key: Any) -> dict[str, Any]:
        """Return the values of `key` by case-folded name (registry names ignore case)."""


class HiveFileReader:
    """Reads a hive file with regipy; every parsing failure becomes a HiveError naming the file.

    The file is opened by agent.inventory.reading (inside `root`, regular files only, capped) and
    regipy is handed that descriptor (it reads its argument with `open()`, which takes one): a
    FIFO, a device or a link planted as a user's NTUSER.DAT is refused, never re-opened by name.
    """

    def __init__(self, path: Path, label: str = "", root: Path = Path("/")) -> None:
        self.path = path
        self.label = label or str(path)
        try:
            from regipy.registry import RegistryHive
            fd, _ = open_regular(path, DATABASE_LIMIT, root=root)
            self._hive = RegistryHive(fd)  # regipy's `with open(fd)` reads it whole and closes it
            self._root = self._hive.root
        except Exception as exc:  # noqa: BLE001 - regipy raises many types for bad input
            raise self._error(exc) from None

    def open(self, path: str) -> Any | None:
        node = self._root
        try:
            for part in filter(None, path.split("\\")):
                node = next((sub for sub in node.iter_subkeys() if sub.name.casefold() == part.casefold()), None)
                if node is None:
                    return None
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None
        return node

    def subkeys(self, key: Any) -> Iterator[tuple[str, Any]]:
        try:
            subs = list(key.iter_subkeys())
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None
        return ((sub.name, sub) for sub in subs)

    def values(self, key: Any) -> dict[str, Any]:
        try:
            return {v.name.casefold(): v.value for v in key.iter_values()}
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> HiveError:
        if isinstance(exc, OSError):
            return HiveError(f"{self.label}: {exc.strerror or exc}")
        detail = "".join(c for c in str(exc) if c.isprintable())[:120]
        return HiveError(f"{self.label}: damaged or not a registry hive ({type(exc).__name__}: {detail})")


class LiveRegistryReader:
    """Reads the running registry with winreg (64-bit view), under one root key and base path."""

    def __init__(self, hkey: str, base: str) -> None:
        import winreg  # only exists on Windows; imported here so the module loads everywhere

        self._winreg = winreg
        self._hkey = getattr(winreg, hkey)
        self._base = base
        self._access = winreg.KEY_READ | winreg.KEY_WOW64_64KEY
        self.label = f"{hkey}\\{base}"

    def open(self, path: str) -> Any | None:
        full = "\\".join(p for p in (self._base, path) if p)
        try:
            return self._winreg.OpenKey(self._hkey, full, 0, self._access)
        except OSError:
            return None

    def subkeys(self, key: Any) -> Iterator[tuple[str, Any]]:
        count = self._winreg.QueryInfoKey(key)[0]
        for index in range(count):
            try:
                name = self._winreg.EnumKey(key, index)
                yield name, self._winreg.OpenKey(key, name, 0, self._access)
            except OSError:  # removed while listing, or no access: skip that one key
                continue

    def values(self, key: Any) -> dict[str, Any]:
        count = self._winreg.QueryInfoKey(key)[1]
        found = {}
        for index in range(count):
            name, data, _kind = self._winreg.EnumValue(key, index)
            found[name.casefold()] = data
        return found


def _text(values: dict[str, Any], name: str) -> str:
    value = values.get(name.casefold())
    if isinstance(value, bytes):
        return ""
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    return str(value).strip().strip("\x00") if value is not None else ""


def _number(values: dict[str, Any], name: str) -> int:
    value = values.get(name.casefold())
    try:
        return int(value) if value is not None and not isinstance(value, bytes) else 0
    except (ValueError, TypeError):  # TypeError: a REG_MULTI_SZ where a DWORD belongs
        return 0


def is_hidden_entry(values: dict[str, Any]) -> bool:
    """Return True for Uninstall entries Add/Remove Programs does not list: no DisplayName,
    SystemComponent=1, updates (ParentKeyName, or a ReleaseType of update/hotfix)."""
    return (
        not _text(values, "DisplayName")
        or _number(values, "SystemComponent") == 1
        or bool(_text(values, "ParentKeyName"))
        or _text(values, "ReleaseType").casefold() in UPDATE_RELEASE_TYPES
    )


def msi_product_code(key_name: str, values: dict[str, Any]) -> str:
    """Given an Uninstall entry, return its MSI product code ({GUID}) or "" for other installers.

    Why both tests: MSI names the key after the product code and sets WindowsInstaller=1, but
    some bootstrappers (Burn, JetBrains) also use GUID key names without being MSI products.
    """
    if _GUID.match(key_name) and _number(values, "WindowsInstaller") == 1:
        return key_name.upper()
    found = re.search(r"msiexec(?:\.exe)?\"?\s+/[xi]\s*(\{[0-9A-Fa-f-]{36}\})", _text(values, "UninstallString"), re.I)
    return found.group(1).upper() if found else ""


def uninstall_app(key_name: str, values: dict[str, Any], *, hive: str, key_path: str, scope: str,
                  user: str, view: str) -> App | None:
    """Given one Uninstall subkey's name and values, return its App, or None when ARP hides it."""
    if is_hidden_entry(values):
        return None
    name = _text(values, "DisplayName")
    code = msi_product_code(key_name, values)
    extra = {
        "kind": "arp", "scope": scope, "view": view, "hive": hive, "key": key_path,
        "uninstall": _text(values, "UninstallString"),
        "quiet_uninstall": _text(values, "QuietUninstallString"),
        "msi_product_code": code,
    }
    return App(
        source="windows", id=key_name, name=name, version=_text(values, "DisplayVersion"),
        publisher=_text(values, "Publisher"), path=_text(values, "InstallLocation"), user=user,
        aliases=_unique(name, code), extra=tuple(sorted((k, v) for k, v in extra.items() if v)),
    )


def uninstall_apps(reader: RegistryReader, path: str, *, scope: str, user: str = "", view: str = "") -> list[App]:
    """Return the visible Add/Remove Programs entries under one Uninstall key (none if absent)."""
    key = reader.open(path)
    if key is None:
        return []
    apps = []
    for name, sub in reader.subkeys(key):
        app = uninstall_app(name, reader.values(sub), hive=reader.label, key_path=f"{path}\\{name}",
                            scope=scope, user=user, view=view)
        if app is not None:
            apps.append(app)
    return apps


@dataclass(frozen=True)
class PackageName:
    """The parts of an MSIX package full name: Name_Version_Architecture_ResourceId_PublisherId."""

    name: str
    version: str
    architecture: str
    resource_id: str
    publisher_id: str

    @property
    def family(self) -> str:
        return f"{self.name}_{self.publisher_id}"


def parse_package_full_name(full_name: str) -> PackageName | None:
    """Return the parts of a package full name (e.g. `BytedancePte.Ltd.TikTok_1.0.0.0_x64__6yccndn6064se`),
    or None when it does not have the five underscore-separated fields."""
    parts = full_name.split("_")
    if len(parts) != 5 or not parts[0] or not parts[4]:
        return None
    return PackageName(*parts)


def package_app(full_name: str, values: dict[str, Any], *, hive: str, scope: str, user: str,
                manifest: Callable[[str], dict[str, str]]) -> App | None:
    """Given one package key, return its App; None for resource packages (language or scale
    add-ons of a main package) and for keys that are not package full names."""
    parts = parse_package_full_name(full_name)
    if parts is None or parts.resource_id not in ("", "~", "neutral"):
        return None
    folder = _text(values, "PackageRootFolder") or _manifest_folder(_text(values, "Path"))
    identity = manifest(folder) if folder else {}
    display = _text(values, "DisplayName")
    if display.startswith("@") or "ms-resource" in display:
        display = ""  # an indirect string that only the package's resources.pri can resolve
    name = identity.get("DisplayName") or display or parts.name
    extra = {
        "kind": "msix", "scope": scope, "hive": hive, "package_full_name": full_name,
        "package_family_name": parts.family, "architecture": parts.architecture,
        "publisher_id": parts.publisher_id,
    }
    return App(
        source="windows", id=parts.name, name=name, version=identity.get("Version") or parts.version,
        publisher=identity.get("Publisher") or parts.publisher_id, path=folder, user=user,
        aliases=_unique(parts.family, full_name), extra=tuple(sorted((k, v) for k, v in extra.items() if v)),
    )


def package_apps(reader: RegistryReader, path: str, *, scope: str, user: str = "",
                 manifest: Callable[[str], dict[str, str]] = lambda folder: {}) -> list[App]:
    """Return the Store/MSIX packages listed under one package-repository key (none if absent)."""
    key = reader.open(path)
    if key is None:
        return []
    apps = []
    for full_name, sub in reader.subkeys(key):
        app = package_app(full_name, reader.values(sub), hive=reader.label, scope=scope, user=user,
                          manifest=manifest)
        if app is not None:
            apps.append(app)
    return apps


def _manifest_folder(manifest_path: str) -> str:
    """Provisioned packages store the manifest's path; return the package folder it sits in."""
    folder = manifest_path.rpartition("\\")[0]
    return folder.removesuffix("\\AppxMetadata") if folder else ""


def read_manifest(path: Path, root: Path = Path("/")) -> dict[str, str]:
    """Return Name, Version, Publisher and DisplayName from an AppxManifest.xml; {} if unreadable.

    Why optional: the registry gives name, version and publisher id on its own; the manifest
    adds the human display name and the full publisher, when the package folder is readable.
    """
    from xml.etree import ElementTree  # Store package manifests: only on a Windows volume

    try:
        tree = ElementTree.ElementTree(ElementTree.fromstring(read_bytes(path, root=root)))
    except (OSError, ElementTree.ParseError, ValueError, LookupError):  # LookupError: unknown encoding
        return {}
    found: dict[str, str] = {}
    identity = tree.find("{*}Identity")
    if identity is not None:
        found.update({k: v for k, v in identity.attrib.items() if k in ("Name", "Version", "Publisher")})
    display = tree.findtext("{*}Properties/{*}DisplayName") or ""
    if display and "ms-resource" not in display:
        found["DisplayName"] = display.strip()
    return found


def dedupe(apps: Iterable[App]) -> list[App]:
    """Return apps with 32/64-bit duplicates merged: the same entry (key, name, version) in both
    registry views is one install seen twice, kept once with view "64-bit,32-bit". Entries of
    different users or versions, or that differ in anything the matcher reads (publisher,
    location, aliases), stay apart."""
    kept: dict[tuple[object, ...], App] = {}
    for app in apps:
        key = (app.user, app.extra_value("kind"), app.id.casefold(), app.name, app.version,
               app.publisher, app.path, app.aliases)
        first = kept.get(key)
        if first is None:
            kept[key] = app
            continue
        views = ",".join(_unique(*first.extra_value("view").split(","), app.extra_value("view")))
        kept[key] = _with_extra(first, view=views)
    return list(kept.values())


def _with_extra(app: App, **changes: str) -> App:
    extra = {**dict(app.extra), **changes}
    return replace(app, extra=tuple(sorted((k, v) for k, v in extra.items() if v)))


def _unique(*values: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


# ----------------------------------------------------------------------------- hive discovery

@dataclass(frozen=True)
class HiveSource:
    """One hive to read: its role (machine, user, classes), whose it is, and how to open it."""

    role: str
    user: str
    opener: Callable[[], RegistryReader]


def find_path(base: Path, *parts: str, root: Path = Path("/")) -> Path | None:
    """Return base/parts resolved case-insensitively (a mounted NTFS volume may not keep Windows'
    spelling, e.g. `system32`), or None when some component does not exist inside `root`."""
    path = base
    for part in parts:
        exact = path / part
        if exists(exact, root=root):
            path = exact
            continue
        try:
            match = next((name for name, _ in folder_entries(path, root=root) if name.casefold() == part.casefold()), None)
        except OSError:
            return None
        if match is None:
            return None
        path = path / match
    return path


def offline_hives(root: Path) -> list[HiveSource]:
    """Return the hives of the Windows volume mounted at `root`: SOFTWARE, then each profile's
    NTUSER.DAT and UsrClass.dat under Users/<name>/ (every profile, logged on or not)."""
    sources = []
    software = find_path(root, *SOFTWARE_HIVE, root=root)
    if software is not None:
        sources.append(HiveSource("machine", "", _file_opener(root, software)))
    users = find_path(root, "Users", root=root)
    try:
        profiles = folder_entries(users, root=root) if users is not None else []
    except OSError:
        profiles = []
    for name, info in sorted(profiles, key=lambda entry: entry[0].casefold()):
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISLNK(info.st_mode)) or name.casefold() in NOT_USERS:
            continue
        for role, parts in (("user", USER_HIVE), ("classes", CLASSES_HIVE)):
            hive = find_path(users / name, *parts, root=root)
            if hive is not None:
                sources.append(HiveSource(role, name, _file_opener(root, hive)))
    return sources


def _file_opener(root: Path, path: Path) -> Callable[[], RegistryReader]:
    label = "/" + str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    return lambda: HiveFileReader(path, label, root)


def live_hives() -> list[HiveSource]:
    """Return the running system's hives: HKLM\\SOFTWARE, then every profile in ProfileList
    through HKEY_USERS when it is loaded, else through its NTUSER.DAT / UsrClass.dat files."""
    machine = LiveRegistryReader("HKEY_LOCAL_MACHINE", "SOFTWARE")
    loaded = LiveRegistryReader("HKEY_USERS", "")
    loaded_sids = {name.casefold() for name, _ in loaded.subkeys(loaded.open(""))}
    sources = [HiveSource("machine", "", lambda: machine)]
    for sid, folder in profiles(machine):
        user = Path(folder.replace("\\", "/")).name
        if sid.casefold() in loaded_sids:
            sources.append(HiveSource("user", user, _live_opener(sid)))
            sources.append(HiveSource("classes", user, _live_opener(f"{sid}_Classes")))
            continue
        for role, parts in (("user", USER_HIVE), ("classes", CLASSES_HIVE)):
            hive = find_path(Path(folder), *parts)
            if hive is not None:
                sources.append(HiveSource(role, user, lambda hive=hive: HiveFileReader(hive)))
    return sources


def _live_opener(base: str) -> Callable[[], RegistryReader]:
    return lambda: LiveRegistryReader("HKEY_USERS", base)


def profiles(software: RegistryReader) -> list[tuple[str, str]]:
    """Return (SID, profile folder) for the people's profiles in a SOFTWARE hive's ProfileList
    (SIDs S-1-5-21-…; the system's own service profiles are left out)."""
    key = software.open(PROFILE_LIST)
    if key is None:
        return []
    found = []
    for sid, sub in software.subkeys(key):
        folder = _text(software.values(sub), "ProfileImagePath")
        if sid.startswith("S-1-5-21-") and folder:
            found.append((sid, folder))
    return found


def read_hive(source: HiveSource, manifest: Callable[[str], dict[str, str]]) -> list[App]:
    """Return the apps one hive lists. Raise HiveError if the hive cannot be read or is not the
    kind of hive its place says it is (a SOFTWARE without Microsoft, a user hive without Software)."""
    reader = source.opener()
    if source.role == "machine":
        _expect(reader, "Microsoft", "SOFTWARE")
        apps = [app for path, view in MACHINE_UNINSTALL
                for app in uninstall_apps(reader, path, scope="machine", view=view)]
        return apps + package_apps(reader, PROVISIONED, scope="provisioned", manifest=manifest)
    if source.role == "user":
        _expect(reader, "Software", "user (NTUSER.DAT)")
        return uninstall_apps(reader, USER_UNINSTALL, scope="user", user=source.user)
    return package_apps(reader, USER_PACKAGES, scope="user", user=source.user, manifest=manifest)


def _expect(reader: RegistryReader, key: str, kind: str) -> None:
    if reader.open(key) is None:
        raise HiveError(f"{reader.label}: not a {kind} hive (no {key} key)")


class WindowsCollector:
    """Add/Remove Programs entries and Store packages of a Windows system, live or mounted."""

    name = "windows"
    live_only = False

    def unavailable(self, ctx: Context) -> str | None:
        if ctx.live:
            return WINDOWS(ctx)
        if find_path(ctx.root, *SOFTWARE_HIVE, root=ctx.root) is None and find_path(ctx.root, "Users", root=ctx.root) is None:
            return f"no Windows volume at {ctx.root} (no Windows/System32/config/SOFTWARE or Users folder)"
        if importlib.util.find_spec("regipy") is None:  # optional where the OS has no package of it (Debian)
            return "reading hive files needs regipy, which is not installed (pip install regipy)"
        return None

    def collect(self, ctx: Context) -> Collected:
        sources = live_hives() if ctx.live else offline_hives(ctx.root)
        manifest = _manifest_reader(ctx)
        result = Collected()
        apps: list[App] = []
        for source in sources:
            try:
                apps.extend(read_hive(source, manifest))
            except HiveError as exc:
                result.errors.append(CollectorError(self.name, str(exc)))
        result.apps = dedupe(apps)
        return result


def _manifest_reader(ctx: Context) -> Callable[[str], dict[str, str]]:
    """Return a function reading the AppxManifest.xml of a package folder given as a Windows path
    (C:\\Program Files\\WindowsApps\\…), found under the root when reading a mounted volume."""
    def read(folder: str) -> dict[str, str]:
        if ctx.live:
            return read_manifest(Path(folder) / "AppxManifest.xml")
        parts = [p for p in folder.replace("/", "\\").split("\\")[1:] if p]  # drop the drive
        path = find_path(ctx.root, *parts, "AppxManifest.xml", root=ctx.root) if parts else None
        return read_manifest(path, ctx.root) if path is not None else {}
    return read
