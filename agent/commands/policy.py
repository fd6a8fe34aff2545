"""`appban policy keygen|sign|verify|fetch|show|export`: the publisher's and the administrator's
tools for the signed ban list.

keygen and sign are for whoever publishes the list (files interchangeable with the `minisign`
command); verify checks a list and signature before publishing or after a download; fetch
refreshes the cache now and says what changed; show describes the list in force; export writes it
as the file an enforcement engine reads (agent/export). Every failure is one line on stderr and
exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from agent.banlist import cache
from agent.banlist.parse import BanListError, parse_banlist
from agent.banlist.signature import SignatureError, generate_keypair, parse_public_key, parse_secret_key, sign, verify
from agent.banlist.central import RefreshResult, refresh
from agent.banlist.source import load_active, with_url
from agent.commands.common import add_config_arg, add_state_dir_arg, config_from, state_dir_from
from agent.config import Config
from agent.commands.export import add_export_parser

EXIT_OK, EXIT_FAILED = 0, 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("policy", help="sign, verify, fetch and show the ban list")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    keygen = actions.add_parser("keygen", help="create a minisign key pair for signing ban lists")
    keygen.add_argument("--secret-key", default="appban.key", metavar="FILE", help="default: appban.key")
    keygen.add_argument("--public-key", default="appban.pub", metavar="FILE", help="default: appban.pub")
    keygen.add_argument("--force", action="store_true", help="overwrite existing key files")
    keygen.set_defaults(run=run_keygen)

    signer = actions.add_parser("sign", help="validate a ban list and write its minisign signature")
    signer.add_argument("file", metavar="FILE")
    signer.add_argument("--secret-key", required=True, metavar="FILE", help="unencrypted minisign secret key")
    signer.add_argument("--signature", metavar="SIG", help="default: FILE.minisig")
    signer.add_argument("--trusted-comment", metavar="TEXT",
                        help="signed comment (default: timestamp, file name and serial)")
    signer.set_defaults(run=run_sign)

    checker = actions.add_parser("verify", help="verify a ban list and its signature")
    checker.add_argument("file", metavar="FILE")
    checker.add_argument("--signature", metavar="SIG", help="default: FILE.minisig")
    checker.add_argument("--public-key", action="append", default=[], metavar="FILE",
                         help="trusted minisign public key file (repeatable; default: config trusted_keys)")
    add_config_arg(checker)
    checker.set_defaults(run=run_verify)

    fetcher = actions.add_parser("fetch", help="refresh the ban list from its URL now and print what changed")
    fetcher.add_argument("--url", metavar="URL", help="fetch from this https URL instead of config banlist.url")
    add_config_arg(fetcher)
    add_state_dir_arg(fetcher)
    fetcher.set_defaults(run=run_fetch)

    show = actions.add_parser("show", help="show the ban list in force: serial, signer, age, staleness")
    add_config_arg(show)
    add_state_dir_arg(show)
    show.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    show.set_defaults(run=run_show)

    add_export_parser(actions)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BanListError(f"{what} {path}: cannot read: {exc.strerror or exc}") from None


def _create_all(files: list[tuple[str, str, int]], force: bool) -> None:
    """Write every (path, text, mode) key file or none: each is first written to a temporary file
    beside its target (with `mode` from the start: a secret key is never briefly world-readable),
    so a target that cannot be written is found before an existing key is replaced."""
    staged: list[tuple[str, str]] = []
    try:
        for path, text, mode in files:
            if not force and os.path.lexists(path):
                raise BanListError(f"key file {path}: already exists (use --force to overwrite)")
            staged.append((_stage(path, text, mode), path))
        for temp, path in staged:
            try:
                os.replace(temp, path)
            except OSError as exc:
                raise BanListError(f"key file {path}: cannot create: {exc.strerror or exc}") from None
    finally:
        for temp, _ in staged:
            Path(temp).unlink(missing_ok=True)


def _stage(path: str, text: str, mode: int) -> str:
    """Write `text` to a new temporary file in `path`'s folder; return its name."""
    folder = os.path.dirname(path) or "."
    try:
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as exc:
        raise BanListError(f"key file {path}: cannot create: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w") as handle:
        os.chmod(temp, mode)
        handle.write(text)
    return temp


def run_keygen(args: argparse.Namespace) -> int:
    secret, public = generate_keypair()
    _create_all([(args.secret_key, secret.to_minisign_file(), 0o600),
                 (args.public_key, public.to_minisign_file(), 0o644)], args.force)
    print(f"key id {public.key_id_hex}")
    print(f"secret key: {args.secret_key} (unencrypted: keep it offline, readable by the publisher only)")
    print(f"public key: {args.public_key}")
    print(f"for the agents' config, banlist.trusted_keys: [\"{public.to_base64()}\"]")
    return EXIT_OK


def run_sign(args: argparse.Namespace) -> int:
    data = _read(args.file, "ban list")
    banlist = parse_banlist(data, f"ban list {args.file}")  # never sign a list the agents would refuse
    try:
        secret = parse_secret_key(_read(args.secret_key, "secret key"))
    except SignatureError as exc:
        raise BanListError(f"secret key {args.secret_key}: {exc}") from None
    comment = args.trusted_comment
    if comment is None:
        comment = f"timestamp:{int(time.time())}\tfile:{Path(args.file).name}\tserial:{banlist.serial}"
    try:
        text = sign(data, secret, comment)
    except ValueError as exc:
        raise BanListError(f"trusted comment: {exc}") from None
    output = args.signature or args.file + ".minisig"
    try:
        Path(output).write_text(text)
    except OSError as exc:
        raise BanListError(f"signature {output}: cannot write: {exc.strerror or exc}") from None
    print(f"signed {args.file} (serial {banlist.serial}) with key {secret.key_id_hex}: {output}")
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    data = _read(args.file, "ban list")
    signature_path = args.signature or args.file + ".minisig"
    signature = _read(signature_path, "signature")
    if args.public_key:
        keys_text = [(path, _read(path, "public key")) for path in args.public_key]
    else:
        keys_text = [("config banlist.trusted_keys", k.encode()) for k in config_from(args).banlist.trusted_keys]
    try:
        keys = [parse_public_key(text) for _, text in keys_text]
        verified = verify(data, signature, keys)
    except SignatureError as exc:
        raise BanListError(f"ban list {args.file}: {exc}") from None
    banlist = parse_banlist(data, f"ban list {args.file}")
    print(f"{args.file}: good signature by key {verified.key_id_hex}, serial {banlist.serial}, "
          f"{len(banlist.entries)} entries")
    print(f"trusted comment: {verified.trusted_comment}")
    return EXIT_OK


def run_fetch(args: argparse.Namespace) -> int:
    config = config_from(args)
    if args.url:
        config = with_url(config, args.url)
    if not config.banlist.url:
        raise BanListError("no ban-list URL: set banlist.url in the config or pass --url")
    result = refresh(config, state_dir_from(args, config), datetime.now(timezone.utc), log_failure=False)
    if result.error:
        print(f"appban: {result.error}", file=sys.stderr)
        return EXIT_FAILED
    print(describe_refresh(config.banlist.url, result))
    return EXIT_OK


def describe_refresh(url: str, result: RefreshResult) -> str:
    """Return what a successful refresh did, for people: the serials and the entries that changed."""
    info = result.info
    assert info is not None
    signer = f"signed by key {info.signer}" if info.signed else "UNSIGNED"
    if result.not_modified:
        lines = [f"ban list {url}: not modified (HTTP 304); serial {info.serial} ({signer}) stays in force"]
    elif not result.changed:
        lines = [f"ban list {url}: serial {info.serial} ({signer}) unchanged"]
    else:
        before = "nothing" if result.previous_serial is None else f"serial {result.previous_serial}"
        lines = [f"ban list {url}: {before} -> serial {info.serial} ({signer})"]
        for label, ids in (("added", result.added), ("removed", result.removed), ("changed", result.updated)):
            lines.append(f"  {len(ids)} {label}" + (f": {', '.join(ids)}" if ids else ""))
    if info.stale and info.stale_since:
        lines.append(f"WARNING: serial {info.serial} is stale (expired {info.stale_since.isoformat()})")
    return "\n".join(lines)


def run_show(args: argparse.Namespace) -> int:
    config = config_from(args)
    now = datetime.now(timezone.utc)
    state_dir = state_dir_from(args, config)
    facts = show_facts(config, state_dir, now)
    if args.format == "json":
        print(json.dumps(facts, indent=2, ensure_ascii=False))
    else:
        width = max(len(k) for k in facts) + 1
        for key, value in facts.items():
            print(f"{key + ':':<{width}} {_plain(value)}")
    return EXIT_OK


def show_facts(config: Config, state_dir: Path, now: datetime) -> dict[str, Any]:
    """Return what `policy show` prints about the list in force. Raise BanListError if there is none."""
    banlist, info = load_active(config, None, now, state_dir)
    facts: dict[str, Any] = {
        "source": info.source,
        "serial": info.serial,
        "signed": info.signed,
        "signer": info.signer or None,
        "publisher": banlist.publisher or None,
        "issued": banlist.issued.isoformat(),
        "age": _age(now - banlist.issued),
        "expires": banlist.expires.isoformat() if banlist.expires else None,
        "stale": info.stale,
        "stale_since": info.stale_since.isoformat() if info.stale_since else None,
        "entries": len(banlist.entries),
        "exceptions": len(banlist.exceptions),
    }
    meta = cache.read_meta(state_dir) if config.banlist.url else None
    if meta is not None:
        facts.update(
            trusted_comment=meta.trusted_comment or None,
            fetched=meta.fetched.isoformat(), checked=meta.checked.isoformat(),
            checked_ago=_age(now - meta.checked), cache=str(cache.cache_dir(state_dir)),
        )
    return facts


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "in the future"
    days, rest = divmod(seconds, 86400)
    if days:
        return f"{days}d {rest // 3600}h"
    return f"{rest // 3600}h {rest % 3600 // 60}m"


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
