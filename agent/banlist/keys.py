"""Loading the agent config with its trusted ban-list keys checked.

A malformed trusted key is refused when the config is read, not at the first refresh an hour
later. The check lives here, in the ban-list layer that owns the key format, so that the config
layer below it never imports the signature module (nor the crypto library, which is loaded only
when keys are configured: most checks never verify a signature, and start-up time is a goal).
"""

from __future__ import annotations

from agent.config import DEFAULT_PATH, Config, ConfigError, load_config


def check_trusted_keys(config: Config, what: str) -> Config:
    """Given a parsed config and the name of its file, return it unchanged if every
    `banlist.trusted_keys` entry is a minisign public key. Raise ConfigError naming the key."""
    if not config.banlist.trusted_keys:
        return config
    from agent.banlist.signature import SignatureError, parse_public_key

    for number, key in enumerate(config.banlist.trusted_keys, 1):
        try:
            parse_public_key(key)
        except SignatureError as exc:
            raise ConfigError(f"{what}: key 'banlist.trusted_keys': key #{number}: {exc}") from None
    return config


def load_agent_config(path: str | None) -> Config:
    """Return the config at `path` (None: the default file if it exists, else defaults), its
    trusted keys checked. Raise ConfigError (one line) if it cannot be read or is invalid."""
    return check_trusted_keys(load_config(path), f"config {path or DEFAULT_PATH}")
