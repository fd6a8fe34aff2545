"""The fleet server's configuration: YAML validated into frozen dataclasses, errors naming the key.

The `banlist` block is the agent's own (`agent.config.BanlistConfig`: a file, or a signed URL with
trusted keys and a last-known-good cache) and group rules are the agent's `GroupRule`, so an
administrator writes both the same way in both files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agent.config import _INTERVAL_CHECK as _INTERVAL  # the agent's own checks, so both files agree
from agent.config import _POSITIVE, BanlistConfig, ConfigError, GroupRule, LoggingConfig, MdmConfig
from agent.documents import DocumentError, load_document
from agent.schema import SchemaError, build

DEFAULT_PATH = "/etc/appban/fleet.yaml"
DATABASE_FILE = "fleet.sqlite"


@dataclass(frozen=True)
class PullTarget:
    """One agent endpoint the fleet polls (`appban run` with `server.listen`)."""

    url: str
    token_file: str = ""


@dataclass(frozen=True)
class PullConfig:
    """Agents polled on a schedule; an agent that does not answer turns stale, it is never dropped."""

    targets: tuple[PullTarget, ...] = ()
    targets_file: str = ""
    """Prometheus file_sd style: a YAML/JSON list of {targets: [url, ...], labels: {token_file: F}},
    re-read when it changes."""
    interval: str = field(default="5m", metadata=_INTERVAL)
    timeout: float = field(default=10.0, metadata=_POSITIVE)
    concurrency: int = field(default=8, metadata=_POSITIVE)
    max_backoff: str = field(default="1h", metadata=_INTERVAL)
    ca_bundle: str = ""
    client_cert: str = ""
    client_key: str = ""


@dataclass(frozen=True)
class GatewayGrant:
    """The administrator's leave for a gateway agent (one that reads phones over adb,
    ideviceinstaller or an MDM) to push those devices' inventories with its own token."""

    gateway: str
    """The gateway's device id, or a glob on it (`lab-gw-*`)."""
    kinds: tuple[str, ...]
    """Kinds of device it may report (android, ios, …); never `host`: an agent speaks for itself."""
    ids: tuple[str, ...] = ("*",)
    """Globs on the reported devices' ids."""


@dataclass(frozen=True)
class FleetConfig:
    """The whole fleet server configuration (config/fleet.example.yaml documents every key)."""

    state_dir: str = "/var/lib/appban-fleet"
    listen: str = "127.0.0.1:8470"
    database: str = ""
    admin_token_file: str = ""
    metrics_token_file: str = ""
    enroll_secret_file: str = ""
    banlist: BanlistConfig = field(default_factory=BanlistConfig)
    default_groups: tuple[str, ...] = ()
    groups: tuple[GroupRule, ...] = ()
    pull: PullConfig = field(default_factory=PullConfig)
    mdm: MdmConfig = field(default_factory=MdmConfig)
    """The MDM APIs read on a schedule, the agent's own `mdm:` block (docs/mdm-connectors.md)."""
    mdm_interval: str = field(default="1h", metadata=_INTERVAL)
    stale_after: str = field(default="1d", metadata=_INTERVAL)
    retention: str = field(default="90d", metadata=_INTERVAL)
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    max_body: int = field(default=16 * 1024 * 1024, metadata=_POSITIVE)
    max_connections: int = field(default=256, metadata=_POSITIVE)
    request_timeout: float = field(default=30.0, metadata=_POSITIVE)
    header_timeout: float = field(default=10.0, metadata=_POSITIVE)
    """Seconds for a request's line and headers to arrive (408 and close beyond: slowloris)."""
    max_connections_per_client: int = 64
    """Connections one client address may hold (503 beyond); 0: no cap (behind a reverse proxy)."""
    gateways: tuple[GatewayGrant, ...] = ()
    """Agents allowed to push the inventories of the phones they read (docs/fleet.md)."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def database_url(self) -> str:
        """The SQLAlchemy URL: `database`, or SQLite in `state_dir` when it is empty."""
        return self.database or f"sqlite:///{Path(self.state_dir) / DATABASE_FILE}"

    def enroll_secret_path(self) -> Path:
        """Where the enroll secret lives: `enroll_secret_file`, or `state_dir/enroll-secret`."""
        return Path(self.enroll_secret_file or Path(self.state_dir) / "enroll-secret")


def load_fleet_config(path: str | None) -> FleetConfig:
    """Return the fleet config at `path` (None: /etc/appban/fleet.yaml).

    Raise ConfigError (one line naming the file and key) if it cannot be read or is invalid.
    """
    path = path or DEFAULT_PATH
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"fleet config {path}: cannot read: {exc.strerror or exc}") from None
    what = f"fleet config {path}"
    try:
        raw = load_document(data, what)
        config = build(FleetConfig, {} if raw is None else raw)
    except DocumentError as exc:
        raise ConfigError(str(exc)) from None
    except SchemaError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    if config.max_connections_per_client < 0:
        raise ConfigError(f"{what}: max_connections_per_client: must be 0 (no cap) or more")
    for index, grant in enumerate(config.gateways):
        if not grant.gateway or not grant.kinds or not grant.ids or "host" in grant.kinds:
            raise ConfigError(f"{what}: gateways[{index}]: needs a gateway id and kinds of phones (never host)")
    return config
