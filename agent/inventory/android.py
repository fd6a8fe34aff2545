"""Android phones plugged into a gateway, read with the `adb` command line.

Why `adb` and not a Python USB library: it is what every IT desk already has, it handles USB,
Wi-Fi debugging and authorisation prompts, and its output can be recorded and replayed in tests.
Per phone: identity from `getprop` and the name set in Settings, every user (work profiles are users too) from `pm list users`,
and per user the packages from `pm list packages` with path, versionCode, installer and uid, the
third-party set (`-3`) and the disabled set (`-d`); versionName comes from one
`dumpsys package packages` per phone (one call, instead of one per package: a phone has hundreds).

`adb shell` hands its arguments to the phone's shell as one line, so anything that reaches it is
either a fixed word, an integer or a name checked against Android's identifier syntax first.
Phones are read in parallel and every call has a timeout, so one stuck phone costs one timeout and
becomes an error for that phone while the others are read.
"""

from __future__ import annotations

import logging
import re
from dataclasses import field
from typing import TYPE_CHECKING

from agent.inventory.base import Collected, Context
from agent.inventory.gateway import UnsafeIdentifierError, gateway_unavailable, pairs, read_all
from agent.log import log_event
from agent.model import App, CollectorError, Device
from agent.records import dataclass
from agent.runner import CommandError, Result, Runner

if TYPE_CHECKING:
    from agent.model import Ownership  # a type alias for type checkers only

logger = logging.getLogger(__name__)

PROGRAM = "adb"
SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
"""USB serials, `emulator-5554`, `192.168.1.20:5555`, `adb-R58M-x._adb-tls-connect._tcp`."""
PACKAGE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")
"""Android's package-name syntax (PackageParser.validateName): letter-led segments joined by dots."""
READY = "device"
_HINTS = {
    "unauthorized": "accept the 'Allow USB debugging' prompt on the phone",
    "offline": "reconnect the cable or restart the adb server",
    "no permissions": "the gateway's udev rules do not let this user open the phone",
}
_PROPERTY = re.compile(r"\[([^\]]+)\]: \[(.*)\]")
_USER = re.compile(r"UserInfo\{(\d+):(.*):([0-9a-fA-F]+)\}")
_PACKAGE_HEADER = re.compile(r"\s+Package \[([^\]]+)\]")
_OWNERS_HEADER = re.compile(r"\d+ owners?:")
_OWNER_LINE = re.compile(r"User\s*(\d+): admin=[^,]*((?:,.*)?)")
FULL_LISTING = ("-f", "-U", "--show-versioncode", "-i")
OLD_LISTING = ("-f", "-i")
"""`pm` before Android 9 refuses `--show-versioncode` ("Error: Unknown option"); it still has -f -i."""


def checked_serial(serial: str) -> str:
    """Return `serial` if it has adb's serial syntax. Raise UnsafeIdentifierError otherwise."""
    if not SERIAL.fullmatch(serial):
        raise UnsafeIdentifierError(f"not an adb serial: {serial!r}")
    return serial


def checked_package(package: str) -> str:
    """Return `package` if it has Android's package-name syntax. Raise UnsafeIdentifierError otherwise."""
    if not PACKAGE.fullmatch(package):
        raise UnsafeIdentifierError(f"not an Android package name: {package!r}")
    return package


@dataclass(frozen=True)
class Attached:
    """One line of `adb devices -l`: a serial, its state and the `key:value` details."""

    serial: str
    state: str
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Listed:
    """One line of `pm list packages -f -U --show-versioncode -i`."""

    package: str
    path: str = ""
    version_code: str = ""
    installer: str = ""
    uid: str = ""


def parse_devices(text: str) -> list[Attached]:
    """Given `adb devices -l` output, return every attached device with its state.

    The state is the second word, except `no permissions (…)`, whose explanation has spaces.
    Daemon start-up chatter (`* daemon …`) and the header are skipped.
    """
    attached = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or line.startswith(("List of devices", "*")):
            continue
        serial, rest = words[0], line[len(words[0]):].strip()
        state = "no permissions" if rest.startswith("no permissions") else words[1]
        details = dict(w.split(":", 1) for w in words[2:] if re.fullmatch(r"[a-z_]+:\S+", w))
        attached.append(Attached(serial, state, details))
    return attached


def parse_properties(text: str) -> dict[str, str]:
    """Given `getprop` output (`[key]: [value]` lines), return the properties."""
    return {m.group(1): m.group(2) for m in map(_PROPERTY.fullmatch, text.splitlines()) if m}


def parse_users(text: str) -> list[tuple[int, str]]:
    """Given `pm list users` output, return (user id, name) pairs: 0 is the owner, a work profile
    is another user (typically 10)."""
    return [(int(m.group(1)), m.group(2)) for m in map(_USER.search, text.splitlines()) if m]


def parse_package_line(line: str) -> Listed | None:
    """Given one line of `pm list packages`, return it parsed, or None for a line that lists no package.

    With `-f` the first word is `<path>=<package>`, and paths hold `=` themselves
    (`/data/app/~~QuU_uyGs4k3phaXbu5GxDg==/com.x-wJJf4==/base.apk=com.x`): the split is on the
    *last* `=` of that word. `installer=null` (preinstalled or adb-installed) becomes "".
    """
    if not line.startswith("package:"):
        return None
    words = line[len("package:"):].split()
    if not words:
        return None
    path, sep, package = words[0].rpartition("=")
    if not sep:
        path, package = "", words[0]
    facts = {}
    for word in words[1:]:
        key, sep, value = word.partition(":" if word.startswith(("versionCode:", "uid:")) else "=")
        if sep:
            facts[key] = value
    installer = facts.get("installer", "")
    return Listed(
        package=package, path=path, version_code=facts.get("versionCode", ""),
        installer="" if installer == "null" else installer, uid=facts.get("uid", ""),
    )


def parse_names(text: str) -> set[str]:
    """Given `pm list packages` output without `-f`, return the package names."""
    return {listed.package for listed in map(parse_package_line, text.splitlines()) if listed}


def parse_version_names(text: str) -> dict[str, str]:
    """Given `dumpsys package packages` output, return each package's versionName.

    Only the first block of a package under `Packages:` counts: an updated system app is repeated
    under `Hidden system packages:` with its factory version. `versionName=null` means none.
    """
    names: dict[str, str] = {}
    current, in_packages = None, False
    for line in text.splitlines():
        if line and not line[0].isspace():
            in_packages, current = line.strip() == "Packages:", None
            continue
        if not in_packages:
            continue
        header = _PACKAGE_HEADER.match(line)
        if header:
            current = header.group(1)
            continue
        stripped = line.strip()
        if current and stripped.startswith("versionName=") and current not in names:
            value = stripped[len("versionName="):]
            names[current] = "" if value == "null" else value
    return names


@dataclass(frozen=True)
class Owners:
    """What `cmd device_policy list-owners` says: whether a device owner manages the phone, and
    which users are managed (work) profiles."""

    device_owner: bool = False
    work_profiles: tuple[int, ...] = ()


def parse_owners(text: str) -> Owners | None:
    """Given `cmd device_policy list-owners` output, return the owners, or None when it is not
    that listing (Android before 11 has no such command; any other text is not guessed at).

    AOSP DevicePolicyManagerServiceShellCommand.runListOwners prints `no owners`, or `N owner(s):`
    then per owner `User %2d: admin=COMPONENT` followed by `,DeviceOwner`, `,ProfileOwner`,
    `,ManagedProfileOwner(parentUserId=P)` and `,Affiliated` as they apply.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines == ["no owners"]:
        return Owners()
    if not lines or not _OWNERS_HEADER.fullmatch(lines[0]):
        return None
    device_owner, work_profiles = False, []
    for found in map(_OWNER_LINE.fullmatch, lines[1:]):
        if found is None:
            return None
        flags = found.group(2).split(",")
        device_owner = device_owner or "DeviceOwner" in flags
        if any(flag.startswith("ManagedProfileOwner(") for flag in flags):
            work_profiles.append(int(found.group(1)))
    return Owners(device_owner, tuple(work_profiles))


def phone_ownership(owners: Owners | None, default: Ownership) -> tuple[Ownership, tuple[int, ...]]:
    """Return the phone's ownership and, for a personal phone, the only users that may be read.

    A device owner means the organisation's phone (every user is read); a managed-profile owner
    without one means a personal phone with a work profile, of which only the work profile is in
    scope (privacy: the personal profile is not listed, reported or touched); no owner, or an
    answer that is not the listing, leaves it to `gateway.default_ownership`.
    """
    if owners is not None and owners.device_owner:
        return "corporate", ()
    if owners is not None and owners.work_profiles:
        return "personal", owners.work_profiles
    return default, ()


@dataclass
class Phone:
    """One ready phone being read: its serial and the calls made to it."""

    serial: str
    runner: Runner
    timeout: float

    def shell(self, *words: str, check: bool = True) -> Result:
        """Run `adb -s SERIAL shell WORDS…` (fixed words, integers and checked names only)."""
        return self.runner.run(PROGRAM, ["-s", self.serial, "shell", *words], timeout=self.timeout, check=check)

    def users(self) -> list[tuple[int, str]]:
        """Every user of the phone (the owner alone if `pm list users` names none)."""
        return parse_users(self.shell("pm", "list", "users").stdout) or [(0, "Owner")]

    def listing(self, user: int) -> list[Listed]:
        """Every package of one user, with the most detail this phone's `pm` gives."""
        result = self.shell("pm", "list", "packages", *FULL_LISTING, "--user", str(user), check=False)
        if "Unknown option" in result.stdout + result.stderr:
            result = self.shell("pm", "list", "packages", *OLD_LISTING, "--user", str(user))
        elif result.returncode != 0:
            raise CommandError(f"pm list packages --user {user}: {' '.join(result.stderr.split())[:300]}")
        return [listed for listed in map(parse_package_line, result.stdout.splitlines()) if listed]

    def owners(self) -> Owners | None:
        """The device-policy owners (None when this Android cannot list them)."""
        return parse_owners(self.shell("cmd", "device_policy", "list-owners", check=False).stdout)

    def subset(self, flag: str, user: int) -> set[str]:
        """The names `pm list packages FLAG --user N` gives (`-3` third-party, `-d` disabled)."""
        return parse_names(self.shell("pm", "list", "packages", flag, "--user", str(user)).stdout)


def read_phone(attached: Attached, runner: Runner, timeout: float, default_ownership: Ownership = "corporate") -> Collected:
    """Given a ready phone, return its Device and apps for every user in scope (on a personal
    phone with a work profile, the work profile only). Raise CommandError on a call that fails or
    times out (the caller turns it into an error for this phone)."""
    phone = Phone(checked_serial(attached.serial), runner, timeout)
    props = parse_properties(phone.shell("getprop").stdout)
    name = phone.shell("settings", "get", "global", "device_name", check=False).stdout.strip()
    ownership, only_users = phone_ownership(phone.owners(), default_ownership)
    device = _device(attached, props, "" if name == "null" else name, ownership)
    apps: list[App] = []
    notes: list[str] = []
    versions = parse_version_names(phone.shell("dumpsys", "package", "packages", check=False).stdout)
    if not versions:
        notes.append(f"{device.id}: dumpsys gave no versionName; version rules treat its apps as matching")
    users = phone.users()
    if only_users:
        skipped = [str(user) for user, _ in users if user not in only_users]
        users = [(user, profile) for user, profile in users if user in only_users]
        notes.append(f"{device.id}: personal phone with a work profile: only the work profile (user "
                     f"{', '.join(str(u) for u, _ in users)}) was read; the personal profile (user "
                     f"{', '.join(skipped) or 'none'}) was skipped")
    for user, profile in users:
        third_party, disabled = phone.subset("-3", user), phone.subset("-d", user)
        for listed in phone.listing(user):
            apps.append(_app(listed, device.id, user, profile, versions, third_party, disabled))
    log_event(logger, logging.INFO, "android.read", device=device.id, apps=len(apps))
    return Collected(apps=apps, devices=[device], notes=notes)


def _device(attached: Attached, props: dict[str, str], name: str, ownership: Ownership) -> Device:
    """The phone's identity; `name` is the one set in Settings (Android 7.1+), which group rules'
    `names` patterns can match."""
    release, sdk = props.get("ro.build.version.release", ""), props.get("ro.build.version.sdk", "")
    attributes = {
        "serial": props.get("ro.serialno", ""),
        "manufacturer": props.get("ro.product.manufacturer", ""),
        "model": props.get("ro.product.model", "") or attached.details.get("model", ""),
        "adb_serial": attached.serial,
        "sdk": sdk,
    }
    return Device(
        id=attached.serial, hostname=name, kind="android",
        os=f"Android {release}" + (f" (SDK {sdk})" if sdk else "") if release else "",
        attributes=pairs(attributes), ownership=ownership,
    )


def _app(
    listed: Listed, device: str, user: int, profile: str, versions: dict[str, str],
    third_party: set[str], disabled: set[str],
) -> App:
    extra = {
        "profile": profile, "installer": listed.installer,
        "version_code": listed.version_code, "uid": listed.uid,
        "system": "false" if listed.package in third_party else "true",
        "enabled": "false" if listed.package in disabled else "true",
    }
    return App(
        source="android", id=listed.package, name=listed.package,
        version=versions.get(listed.package, ""), path=listed.path, user=str(user), device=device,
        extra=pairs(extra),
    )


class AndroidCollector:
    """Every phone `adb devices -l` lists; phones that are not ready are reported, not skipped."""

    name = "android"
    live_only = True

    def unavailable(self, ctx: Context) -> str | None:
        return gateway_unavailable(ctx, (PROGRAM,))

    def collect(self, ctx: Context) -> Collected:
        settings = ctx.config.gateway
        listing = ctx.runner.run(PROGRAM, ["devices", "-l"], timeout=settings.timeout).stdout
        attached = parse_devices(listing)
        ready = [phone for phone in attached if phone.state == READY]
        result = read_all(
            self.name, ready, lambda phone: phone.serial,
            lambda phone: read_phone(phone, ctx.runner, settings.timeout, settings.default_ownership), settings.parallel,
        )
        for phone in attached:
            if phone.state != READY:
                hint = _HINTS.get(phone.state, "adb cannot talk to it in this state")
                result.errors.append(CollectorError(self.name, f"device is {phone.state}: {hint}", phone.serial))
        return result
