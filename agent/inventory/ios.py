"""iPhones and iPads plugged into a gateway, read with libimobiledevice's command-line tools.

`idevice_id -l` lists the UDIDs on USB, `ideviceinfo -u UDID -x` gives the lockdown identity as an
XML plist, and `ideviceinstaller` lists the user apps. Every ideviceinstaller generation can print
that list as the XML plist installation_proxy returned (parsed with plistlib, so display names
with commas or quotes need no guessing); only the command line differs: 1.1.x takes
`-u UDID -l -o xml`, 1.2.0 (2025) and the git master before it take `-u UDID list --xml`. The
generation is read once from `--help`. 1.0.x took `-U` for the device, which later versions use
for *uninstall*, so it is refused rather than guessed at.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from agent.inventory.base import Collected, Context
from agent.inventory.gateway import UnsafeIdentifierError, gateway_unavailable, pairs, read_all
from agent.log import log_event
from agent.model import App, Device
from agent.runner import CommandError, Runner

logger = logging.getLogger(__name__)

LIST_IDS, INFO, INSTALLER = "idevice_id", "ideviceinfo", "ideviceinstaller"
UDID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{16}|[0-9A-Fa-f]{40}")
"""40 hex digits up to the iPhone X; `00008030-001A35E11E88802E` since the iPhone XS."""
NO_USBMUXD = "Unable to retrieve device list"
_PAIRING = re.compile(r"Pairing|Password protected|Invalid HostID|not paired", re.IGNORECASE)


def checked_udid(udid: str) -> str:
    """Return `udid` if it has Apple's UDID syntax. Raise UnsafeIdentifierError otherwise."""
    if not UDID.fullmatch(udid):
        raise UnsafeIdentifierError(f"not an iOS UDID: {udid!r}")
    return udid


def parse_udids(text: str) -> list[str]:
    """Given `idevice_id -l` output, return the UDIDs (first word of each line; later versions
    may add ` (USB)`)."""
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def list_arguments(help_text: str, udid: str) -> list[str]:
    """Given `ideviceinstaller --help` output, return the arguments that list a device's user apps
    as XML. Raise CommandError for a generation that cannot (1.0.x)."""
    if "COMMANDS:" in help_text and re.search(r"^\s+list\s", help_text, re.MULTILINE):
        return ["-u", udid, "list", "--xml"]
    if "--list-apps" in help_text and "--udid" in help_text:
        return ["-u", udid, "-l", "-o", "xml"]
    raise CommandError(f"{INSTALLER}: unsupported version (1.1.0 or later is needed)")


def _plist(text: str, what: str) -> Any:
    import plistlib  # with its XML parser: only when a phone is attached
    from xml.parsers.expat import ExpatError

    try:
        return plistlib.loads(text.encode("utf-8"))
    except (plistlib.InvalidFileException, ExpatError, ValueError, AttributeError) as exc:
        # A cut-short XML plist raises ExpatError, a malformed <date> AttributeError: either is
        # this phone's error, never the end of the whole collector.
        raise CommandError(f"{what}: output is not an XML plist: {type(exc).__name__}: {exc}") from None


def parse_device(udid: str, info: dict[str, Any]) -> Device:
    """Given a UDID and the lockdown values `ideviceinfo -x` printed, return its Device."""
    product = str(info.get("DeviceClass", ""))
    version = str(info.get("ProductVersion", ""))
    system = "iPadOS" if product == "iPad" else "iOS"
    attributes = {
        "udid": udid, "serial": info.get("SerialNumber", ""), "model": info.get("ProductType", ""),
        "device_class": product, "build": info.get("BuildVersion", ""),
    }
    return Device(
        id=udid, hostname=str(info.get("DeviceName", "")), kind="ios",
        os=f"{system} {version}" if version else "",
        attributes=pairs({k: str(v) for k, v in attributes.items()}),
    )


def parse_apps(records: Any, device: str) -> list[App]:
    """Given the plist array installation_proxy's Browse returned, return one App per app:
    bundle id, display name (else bundle name, else id), marketing version (else build)."""
    apps = []
    for record in records if isinstance(records, list) else ():
        bundle = str(record.get("CFBundleIdentifier", "")) if isinstance(record, dict) else ""
        if not bundle:
            continue
        build = str(record.get("CFBundleVersion", ""))
        extra = {
            "build": build, "type": str(record.get("ApplicationType", "")),
            "signer": str(record.get("SignerIdentity", "")),
        }
        apps.append(App(
            source="ios", id=bundle,
            name=str(record.get("CFBundleDisplayName") or record.get("CFBundleName") or bundle),
            version=str(record.get("CFBundleShortVersionString") or build), path=str(record.get("Path", "")),
            device=device, extra=pairs(extra),
        ))
    return apps


def read_iphone(udid: str, runner: Runner, timeout: float, help_text: str) -> Collected:
    """Given a UDID, return its Device and user apps. Raise CommandError on a failing call
    (a phone that is locked or not trusted yet says so)."""
    checked_udid(udid)
    try:
        info = _plist(runner.run(INFO, ["-u", udid, "-x"], timeout=timeout).stdout, INFO)
    except CommandError as exc:
        if _PAIRING.search(str(exc)):
            raise CommandError(f"{exc} (unlock the phone and tap 'Trust This Computer')") from None
        raise
    device = parse_device(udid, info if isinstance(info, dict) else {})
    listing = runner.run(INSTALLER, list_arguments(help_text, udid), timeout=timeout).stdout
    apps = parse_apps(_plist(listing, INSTALLER), udid)
    log_event(logger, logging.INFO, "ios.read", device=udid, apps=len(apps))
    return Collected(apps=apps, devices=[device])


class IosCollector:
    """Every iPhone/iPad `idevice_id -l` lists, with its user apps."""

    name = "ios"
    live_only = True

    def unavailable(self, ctx: Context) -> str | None:
        return gateway_unavailable(ctx, (LIST_IDS, INFO, INSTALLER))

    def collect(self, ctx: Context) -> Collected:
        settings = ctx.config.gateway
        listed = ctx.runner.run(LIST_IDS, ["-l"], timeout=settings.timeout, check=False)
        if listed.returncode != 0 and NO_USBMUXD in listed.stdout + listed.stderr:
            return Collected(notes=["usbmuxd is not running, so no iPhone is attached (it starts when one is plugged in)"])
        if listed.returncode != 0:
            raise CommandError(f"{LIST_IDS} -l: {' '.join(listed.stderr.split())[:300]}")
        udids = parse_udids(listed.stdout)
        if not udids:
            return Collected()
        usage = ctx.runner.run(INSTALLER, ["--help"], timeout=settings.timeout, check=False)
        help_text = usage.stdout + usage.stderr
        return read_all(
            self.name, udids, lambda udid: udid,
            lambda udid: read_iphone(udid, ctx.runner, settings.timeout, help_text), settings.parallel,
        )
