"""Service settings are checked whole before use, each problem one line naming the key or file."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError
from agent.inventory import UnknownSourceError
from agent.service.settings import ServiceError, load_settings
from tests.banlist_servers import make_pki
from tests.service_support import TOKEN


def settings_for(tmp_path: Path, text: str):
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return load_settings(str(path), None)


def test_valid_settings_load_tokens_and_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    (tmp_path / "token").write_text(f"  {TOKEN}\n")
    settings = settings_for(tmp_path, f"""
state_dir: {tmp_path / 'state'}
server: {{listen: "9464", token_file: {tmp_path / 'token'}, tls_cert: {pki.server_cert}, tls_key: {pki.server_key}}}
push: {{url: "https://reports.example/v1", token_file: {tmp_path / 'token'}}}
""")
    assert settings.server_token == TOKEN and settings.push_token == TOKEN
    assert settings.tls is not None and settings.state_dir == tmp_path / "state"


@pytest.mark.parametrize("text, error, message", [
    ("server: {listen: '127.0.0.1:9464'}", ServiceError, "server.token_file is required"),
    ("server: {listen: 'here', token_file: /x}", ServiceError, "server.listen 'here'"),
    ("server: {listen: '9464', token_file: /nonexistent/token}", ServiceError, "server.token_file /nonexistent/token"),
    ("server: {listen: '9464', token_file: TOKEN, tls_cert: /nonexistent.pem}", ServiceError, "server.tls_cert"),
    ("push: {url: 'http://reports.example/v1'}", ServiceError, "must be an https:// URL"),
    ("push: {url: 'https://r.example', token_file: EMPTY}", ServiceError, "is empty"),
    ("inventory: {sources: [nothing]}", UnknownSourceError, "unknown source 'nothing'"),
    ("schedule: {scan: sometimes}", ConfigError, "schedule.scan"),
    ("inventory: {root: /srv/image}\nenforcement: {mode: block}", ServiceError,
     r"acts on enforcement.root \(/\) but the inventory is read from inventory.root \(/srv/image\)"),
])
def test_bad_settings_are_refused(tmp_path: Path, text: str, error: type, message: str) -> None:
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "empty").write_text("\n")
    text = text.replace("TOKEN", str(tmp_path / "token")).replace("EMPTY", str(tmp_path / "empty"))
    with pytest.raises(error, match=message) as caught:
        settings_for(tmp_path, text)
    assert "\n" not in str(caught.value)


def test_plain_http_push_to_loopback_is_allowed(tmp_path: Path) -> None:
    assert settings_for(tmp_path, "push: {url: 'http://127.0.0.1:8080/r'}").config.push.url
