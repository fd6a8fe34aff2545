"""Everything the service derives from its config file, checked up front.

The service loads settings at start and again on SIGHUP; doing every check that can fail here
(the config itself, the listen address, token files, TLS files, collector names) means a bad new
config is refused whole with one log line, and the running service keeps the old one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agent.errors import UserError
from agent.banlist.keys import load_agent_config
from agent.config import Config
from agent.inventory import select
from agent.service.server import parse_listen, tls_context

if TYPE_CHECKING:
    import ssl  # only a configured certificate loads it (agent.service.server.tls_context)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


class ServiceError(UserError):
    """The service cannot start or apply a config; the message is one line naming what and where."""


@dataclass(frozen=True)
class Settings:
    """A validated config with the secrets and TLS context it names already loaded."""

    config: Config
    state_dir: Path
    server_token: str = ""
    push_token: str = ""
    enroll_secret: str = ""
    tls: ssl.SSLContext | None = None

    def server_key(self) -> tuple[str, str, str, str]:
        """What, when it changes on reload, requires restarting the pull endpoint."""
        server = self.config.server
        return server.listen, self.server_token, server.tls_cert, server.tls_key


def read_token(path: str, what: str) -> str:
    """Given a token file path, return the token without surrounding whitespace.

    Raise ServiceError if the file cannot be read or is empty.
    """
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceError(f"{what} {path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if not token:
        raise ServiceError(f"{what} {path}: file is empty")
    return token


def _check_push_url(url: str) -> None:
    """Refuse a push URL that would send reports and the token in clear over a network."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return
    raise ServiceError(f"push.url {url}: must be an https:// URL (plain http only to the loopback address)")


def load_settings(config_path: str | None, state_dir: str | None) -> Settings:
    """Load and check the config at `config_path` (None: the default), `state_dir` overriding it.

    Raise ConfigError, UnknownSourceError or ServiceError (one line each) when anything is unusable.
    """
    config = load_agent_config(config_path)
    select(config.inventory.sources)
    server, push = config.server, config.push
    server_token = tls = None
    if server.listen:
        try:
            parse_listen(server.listen)
        except ValueError as exc:
            raise ServiceError(str(exc)) from None
        if not server.token_file:
            raise ServiceError("server.token_file is required when server.listen is set")
        server_token = read_token(server.token_file, "server.token_file")
        if server.tls_cert:
            try:
                tls = tls_context(server.tls_cert, server.tls_key)
            except OSError as exc:  # ssl.SSLError is one
                raise ServiceError(f"server.tls_cert {server.tls_cert}: cannot load: {exc}") from None
    enforcement = config.enforcement
    if enforcement.mode == "block" and os.path.realpath(config.inventory.root) != os.path.realpath(enforcement.root):
        raise ServiceError(f"enforcement.mode block acts on enforcement.root ({enforcement.root}) but the "
                           f"inventory is read from inventory.root ({config.inventory.root}); they must be the same")
    push_token = read_token(push.token_file, "push.token_file") if push.url and push.token_file else ""
    enroll_secret = (read_token(push.enroll_secret_file, "push.enroll_secret_file")
                     if push.url and push.enroll_secret_file else "")
    if push.url:
        _check_push_url(push.url)
    return Settings(config=config, state_dir=Path(state_dir or config.state_dir),
                    server_token=server_token or "", push_token=push_token, enroll_secret=enroll_secret,
                    tls=tls)
