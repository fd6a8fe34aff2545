"""The agent's local configuration: YAML validated into frozen dataclasses.

Local config is the administrator's word on this machine; in particular only it can turn on
blocking (a central ban list never can). Every key is declared here, an unknown or mistyped key is
refused with one line that names it, and `config/agent.example.yaml` documents each one.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import field
from agent.clock import timedelta
from pathlib import Path

from agent import platform as host
from agent.documents import DocumentError, load_document
from agent.errors import UserError
from agent.log import log_event
from agent.records import dataclass
from agent.schema import SchemaError, build

TYPE_CHECKING = False  # typing for type checkers only (agent.hints)
if TYPE_CHECKING:
    from typing import Literal
else:
    from agent.hints import Literal

logger = logging.getLogger(__name__)

DEFAULT_PATH = host.default_config_file()
"""/etc/appban/agent.yaml on Linux; where the package puts it on macOS and Windows (agent.platform)."""
_INTERVAL = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)?")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
MAX_INTERVAL = 365 * 86400
"""Longer is surely a typo, and the scheduler's timedelta overflows on absurd values."""


class ConfigError(UserError):
    """A config file that cannot be used; the message is one line naming the file and key."""


def interval_seconds(text: str, allow_zero: bool = False) -> float:
    """Given `90s`, `15m`, `1h`, `1d` or a plain number of seconds, return seconds.

    Raise ValueError if malformed, not positive (zero allowed with `allow_zero`) or over a year.
    """
    found = _INTERVAL.fullmatch(str(text).strip())
    if found and allow_zero and float(found.group(1)) == 0:
        return 0.0
    if not found or float(found.group(1)) <= 0:
        raise ValueError(f"bad interval {text!r} (expected e.g. 90s, 15m, 1h)")
    seconds = float(found.group(1)) * _UNIT[found.group(2)]
    if seconds > MAX_INTERVAL:
        raise ValueError(f"bad interval {text!r} (at most 365d)")
    return seconds


def _interval(text: str) -> str:
    interval_seconds(text)
    return text


_INTERVAL_CHECK = {"check": _interval}


def _interval_or_zero(text: str) -> str:
    """An interval that may be zero (`0s`): a splay of zero runs every agent exactly on its
    interval, a token rotation period of zero never rotates."""
    interval_seconds(text, allow_zero=True)
    return text


def _positive(number: float) -> float:
    if number <= 0:
        raise ValueError(f"must be above zero, got {number}")
    return number


def _not_negative(number: float) -> float:
    if number < 0:
        raise ValueError(f"must not be negative, got {number}")
    return number


_POSITIVE = {"check": _positive}
_NOT_NEGATIVE = {"check": _not_negative}


@dataclass(frozen=True)
class DeviceConfig:
    """Identity and groups of the host the agent runs on."""

    id: str = ""
    hostname: str = ""
    groups: tuple[str, ...] = ()
    ownership: Literal["corporate", "personal", "unknown"] = "corporate"
    """Who owns this host; an agent is installed on government machines, hence corporate."""


def _not_empty(text: str) -> str:
    """An empty path would silently mean the current directory."""
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _https(url: str) -> str:
    """The list decides what is blocked fleet-wide, so it only travels over verified TLS."""
    if url and not url.startswith("https://"):
        raise ValueError(f"must be an https:// URL, got {url!r}")
    return _url(url)


def _url(url: str) -> str:
    """Refuse a URL that cannot be parsed (`https://[x`, a port out of range) when the config is
    read: found later, inside the service, it would be an error the reload path never expected."""
    if not url:
        return url
    from urllib.parse import urlsplit  # here: a config without URLs (and a check without a config) never loads it

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check (out of range, not a number)
    except ValueError as exc:
        raise ValueError(f"not a valid URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL with a host: {url!r}")
    return url


@dataclass(frozen=True)
class BanlistConfig:
    """Where the ban list comes from and which signatures are trusted."""

    path: str = ""
    url: str = field(default="", metadata={"check": _https})
    signature_url: str = field(default="", metadata={"check": _https})
    trusted_keys: tuple[str, ...] = ()
    """minisign public keys; checked as the config is loaded (agent.banlist.keys)."""
    allow_unsigned: bool = False
    refresh: str = field(default="1h", metadata=_INTERVAL_CHECK)
    timeout: float = field(default=10.0, metadata=_POSITIVE)
    """Seconds for the connection and for each read."""
    deadline: float = field(default=60.0, metadata=_POSITIVE)
    """Seconds for a whole download (the list, or its signature), retries included."""
    ca_bundle: str = ""
    client_cert: str = ""
    client_key: str = ""
    max_bytes: int = field(default=16 * 1024 * 1024, metadata=_POSITIVE)
    retries: int = field(default=3, metadata=_NOT_NEGATIVE)
    backoff: float = field(default=1.0, metadata=_NOT_NEGATIVE)
    max_age: str = field(default="90d", metadata=_INTERVAL_CHECK)
    """A list without `expires` is flagged stale this long after it was issued."""

    def stale_after(self) -> timedelta:
        """Return `max_age` as a duration (for agent.model.staleness)."""
        return timedelta(seconds=interval_seconds(self.max_age))


@dataclass(frozen=True)
class InventoryConfig:
    """Which collectors run and which tree they read."""

    sources: tuple[str, ...] = ()
    root: str = "/"


@dataclass(frozen=True)
class EnforcementConfig:
    """Blocking: off (`report`) unless the local administrator sets `mode: block`."""

    mode: Literal["report", "block"] = "report"
    dry_run: bool = False
    protected: tuple[str, ...] = ()
    max_actions: int = field(default=5, metadata=_NOT_NEGATIVE)
    """The one cap on a run's actions of every kind (kills, uninstalls, quarantines, phone removals,
    MDM policy changes, exec-guard deny entries, network blocks): over it, nothing is done."""
    contact: str = ""
    root: str = "/"
    """The system acted on: packages are removed and pins and rules written under it (tests aim
    it at a throwaway tree)."""
    guard: Literal["auto", "fanotify", "fapolicyd", "poll", "off"] = "auto"
    guard_mounts: tuple[str, ...] = ()
    fail_closed: bool = False
    guard_deadline: float = 0.25
    kill_interval: str = field(default="0.5s", metadata=_INTERVAL_CHECK)
    kill_grace: float = 3.0
    fapolicyd_rules: str = "/etc/fapolicyd/rules.d/15-appban.rules"
    audit_log: str = ""
    quarantine_dir: str = ""
    notify: bool = True
    network: Literal["none", "hosts", "dnsmasq", "unbound"] = "none"
    """Block banned services' DNS names here: a managed block in /etc/hosts, or a resolver drop-in."""
    network_file: str = ""
    """The file written (under `root`); default /etc/hosts or the resolver's drop-in folder."""
    network_reload: tuple[str, ...] = ()
    """Command run after a drop-in changes, e.g. [unbound-control, reload]; none for hosts."""

    @property
    def max_removals(self) -> int:
        """The cap's old name, for code written against it (config files: see DEPRECATED_KEYS)."""
        return self.max_actions


@dataclass(frozen=True)
class ServerConfig:
    """The pull endpoint; off while `listen` is empty."""

    listen: str = ""
    token_file: str = ""
    tls_cert: str = ""
    tls_key: str = ""


@dataclass(frozen=True)
class PushConfig:
    """Where reports are pushed; off while `url` is empty."""

    url: str = field(default="", metadata={"check": _url})
    token_file: str = ""
    ca_bundle: str = ""
    client_cert: str = ""
    client_key: str = ""
    timeout: float = field(default=10.0, metadata=_POSITIVE)
    deadline: float = field(default=60.0, metadata=_POSITIVE)
    """Seconds for one whole POST: a receiver that trickles its answer must not hold the service."""
    max_queue: int = 1000
    enroll_secret_file: str = ""
    """The fleet's enroll secret: with it the agent enrolls once (`POST /v1/enroll`) and pushes
    with the per-device token it gets back, kept in the state directory."""
    inventory: bool = True
    """Push the inventory with each report, so the fleet can re-check it against its own list."""
    rotate_token_every: str = field(default="30d", metadata={"check": _interval_or_zero})
    """With `enroll_secret_file`: trade the fleet token for a new one (proving the current one)
    when it is this old; `0s`: never (agent/report/enroll.py says how a lost answer is survived)."""


@dataclass(frozen=True)
class JsonlConfig:
    """The JSON-lines file sink for a SIEM (agent/report/jsonl.py); off while `path` is empty."""

    path: str = ""


@dataclass(frozen=True)
class ScheduleConfig:
    """How often the service scans and pushes, and the random splay that spreads a fleet."""

    scan: str = field(default="1h", metadata=_INTERVAL_CHECK)
    push: str = field(default="5m", metadata=_INTERVAL_CHECK)
    splay: str = field(default="5m", metadata={"check": _interval_or_zero})


@dataclass(frozen=True)
class LoggingConfig:
    """Log format (one event per line) and level."""

    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"
    """The service's level: info shows it listening, each scan and each finding (a SIEM then
    needs no report parsing); `appban` commands log at warning unless given -v."""


@dataclass(frozen=True)
class GroupRule:
    """Groups given to the devices (phones, MDM records) that a rule selects: every condition
    given must hold, any value of a condition may (globs, case-insensitive)."""

    groups: tuple[str, ...]
    serials: tuple[str, ...] = ()
    """Device ids, serial numbers or UDIDs."""
    names: tuple[str, ...] = ()
    """Globs on the device id or device name."""
    kinds: tuple[str, ...] = ()
    """Device kinds: android, ios, windows, macos, host."""
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Globs per device attribute (owner, email, email_domain, department, category, model, …)."""
    ownership: tuple[Literal["corporate", "personal", "unknown"], ...] = ()
    """Device ownerships the rule selects."""


@dataclass(frozen=True)
class GatewayConfig:
    """Phones read over USB (adb, libimobiledevice) and the groups of devices that are not this host."""

    enabled: bool = False
    """The phone collectors start adb's server and talk to whatever is plugged in, so a plain
    workstation must opt in; MDM exports (`--inventory`) need no opt-in."""
    timeout: float = field(default=20.0, metadata=_POSITIVE)
    parallel: int = field(default=4, metadata=_POSITIVE)
    android_block: Literal["uninstall", "disable"] = "uninstall"
    default_ownership: Literal["corporate", "personal", "unknown"] = "corporate"
    """Ownership of an adb phone with no device or managed-profile owner (a gateway's phones are
    usually the organisation's, handed in at the desk)."""
    default_groups: tuple[str, ...] = ()
    groups: tuple[GroupRule, ...] = ()


def checked_endpoint(url: str) -> str:
    """MDM credentials and inventories travel over TLS; plain http is allowed only to this
    machine (a private relay, or a test's stand-in server on 127.0.0.1)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    local = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not parts.hostname or not (parts.scheme == "https" or local):
        raise ValueError(f"must be an https:// URL (http only to 127.0.0.1), got {url!r}")
    return url.rstrip("/")


_ENDPOINT = {"check": checked_endpoint}


@dataclass(frozen=True)
class AmapiConfig:
    """Google Android Management API: one enterprise, read with a service-account key file."""

    enterprise: str
    credentials_file: str = field(metadata={"check": _not_empty})
    base_url: str = field(default="https://androidmanagement.googleapis.com", metadata=_ENDPOINT)
    timeout: float = field(default=30.0, metadata=_POSITIVE)
    page_size: int = field(default=100, metadata=_POSITIVE)
    ca_bundle: str = ""


@dataclass(frozen=True)
class IntuneConfig:
    """Microsoft Intune through Graph: an app registration's client secret or certificate, in a file."""

    tenant: str
    client_id: str
    secret_file: str = ""
    certificate_file: str = ""
    """PEM with the private key and the certificate registered for the app."""
    base_url: str = field(default="https://graph.microsoft.com", metadata=_ENDPOINT)
    login_url: str = field(default="https://login.microsoftonline.com", metadata=_ENDPOINT)
    timeout: float = field(default=30.0, metadata=_POSITIVE)
    page_size: int = field(default=100, metadata=_POSITIVE)
    bulk: bool = False
    """Read apps with one AppInvRawData export job instead of one detectedApps call per device."""
    poll_interval: float = field(default=10.0, metadata=_POSITIVE)
    export_timeout: float = field(default=1800.0, metadata=_POSITIVE)
    ca_bundle: str = ""

    def __post_init__(self) -> None:
        if bool(self.secret_file) == bool(self.certificate_file):
            raise SchemaError(("mdm", "intune"), "set exactly one of secret_file, certificate_file")


@dataclass(frozen=True)
class JamfConfig:
    """Jamf Pro: an API client's id and secret (Jamf Pro 10.49 or later)."""

    url: str = field(metadata=_ENDPOINT)
    client_id: str
    secret_file: str = field(metadata={"check": _not_empty})
    timeout: float = field(default=30.0, metadata=_POSITIVE)
    page_size: int = field(default=100, metadata=_POSITIVE)
    ca_bundle: str = ""


@dataclass(frozen=True)
class MdmConfig:
    """The MDMs whose APIs are read (docs/mdm-connectors.md); each is off until configured."""

    amapi: AmapiConfig | None = None
    intune: IntuneConfig | None = None
    jamf: JamfConfig | None = None


@dataclass(frozen=True)
class Config:
    """The whole local configuration."""

    state_dir: str = field(default=host.default_state_dir(), metadata={"check": _not_empty})
    device: DeviceConfig = field(default_factory=DeviceConfig)
    banlist: BanlistConfig = field(default_factory=BanlistConfig)
    inventory: InventoryConfig = field(default_factory=InventoryConfig)
    commands: dict[str, str] = field(default_factory=dict)
    enforcement: EnforcementConfig = field(default_factory=EnforcementConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    push: PushConfig = field(default_factory=PushConfig)
    jsonl: JsonlConfig = field(default_factory=JsonlConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    mdm: MdmConfig = field(default_factory=MdmConfig)


DEPRECATED_KEYS: tuple[tuple[str, str, str], ...] = (
    ("enforcement", "max_removals", "max_actions"),
)
"""(section, old key, new key): old names still read, with a warning. `max_removals` capped every
kind of action long before it was renamed; the name said only removals."""


def parse_config(data: bytes, what: str) -> Config:
    """Given a config document's bytes, return the Config. Raise ConfigError naming the key."""
    try:
        raw = load_document(data, what)
    except DocumentError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return build(Config, _renamed({} if raw is None else raw, what))
    except SchemaError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _renamed(raw: object, what: str) -> object:
    """Given a parsed config document, return it with each deprecated key under its new name,
    logging one warning per old key. Raise ConfigError when both names are set and differ."""
    if not isinstance(raw, dict):
        return raw
    for section, old, new in DEPRECATED_KEYS:
        values = raw.get(section)
        if not isinstance(values, dict) or old not in values:
            continue
        if new in values and values[new] != values[old]:
            raise ConfigError(f"{what}: key '{section}.{old}' is the old name of '{section}.{new}', and the two "
                              f"differ ({values[old]!r} and {values[new]!r}): keep only '{section}.{new}'")
        log_event(logger, logging.WARNING, "config.deprecated_key", config=what, key=f"{section}.{old}",
                  use=f"{section}.{new}")
        raw = {**raw, section: {(new if k == old else k): v for k, v in values.items() if not (k == old and new in values)}}
    return raw


def load_config(path: str | None) -> Config:
    """Return the config at `path`; with None, the default file if it exists, else defaults.

    Raise ConfigError if the file cannot be read or is invalid.
    """
    if path is None:
        if not os.path.exists(DEFAULT_PATH):
            return Config()
        path = DEFAULT_PATH
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read: {exc.strerror or exc}") from None
    return parse_config(data, f"config {path}")
