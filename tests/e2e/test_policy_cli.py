"""`appban policy …` and `appban check` with a ban-list URL, run as subprocesses against real nginx
over HTTPS on 127.0.0.1 and the real `minisign` command."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.banlist.signature import parse_public_key
from tests.banlist_fixtures import nginx, pki, site  # noqa: F401 - fixtures used by name
from tests.banlist_servers import Pki, Site, banlist_yaml, free_port
from tests.conftest import require_tool, run_cli

require_tool("nginx")
MINISIGN = require_tool("minisign")
TIMEOUT = 60


def appban(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI; NO_PROXY keeps a proxy set in the environment away from 127.0.0.1."""
    return run_cli(*map(str, args), cwd=cwd, env={"NO_PROXY": "127.0.0.1,localhost"})


def minisign(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MINISIGN, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, start_new_session=True, check=False)


@pytest.fixture
def publisher(tmp_path: Path) -> Path:
    """A publisher's folder with a key pair made by `appban policy keygen`."""
    folder = tmp_path / "publisher"
    folder.mkdir()
    done = appban("policy", "keygen", "--secret-key", "list.key", "--public-key", "list.pub", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert (folder / "list.key").stat().st_mode & 0o777 == 0o600
    return folder


def public_line(folder: Path) -> str:
    return (folder / "list.pub").read_text().splitlines()[1]


def publish(site: Site, publisher: Path, data: bytes) -> None:
    """Sign with `appban policy sign` and put list and signature on the web server."""
    (publisher / "banlist.yaml").write_bytes(data)
    done = appban("policy", "sign", "banlist.yaml", "--secret-key", "list.key", cwd=publisher)
    assert done.returncode == 0, done.stderr
    site.put("banlist.yaml.minisig", (publisher / "banlist.yaml.minisig").read_bytes())
    site.put("banlist.yaml", data)


def agent_config(tmp_path: Path, pki: Pki, url: str, key: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"banlist:\n  url: {url}\n  trusted_keys: [{key}]\n  ca_bundle: {pki.ca}\n"
        "  timeout: 2\n  retries: 1\n  backoff: 0.01\n"
    )
    return path


def inventory_with_tiktok(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({
        "format": "appban.inventory/v1",
        "devices": [{"id": "laptop-7", "groups": ["staff"]}],
        "apps": [{"device": "laptop-7", "source": "process", "id": "tiktok", "name": "tiktok"}],
    }))
    return path


def test_keygen_and_sign_interoperate_with_minisign(publisher: Path) -> None:
    (publisher / "banlist.yaml").write_bytes(banlist_yaml(4))
    signed = appban("policy", "sign", "banlist.yaml", "--secret-key", "list.key", cwd=publisher)
    assert signed.returncode == 0 and "serial 4" in signed.stdout

    checked = minisign("-V", "-p", "list.pub", "-m", "banlist.yaml", cwd=publisher)
    assert checked.returncode == 0, checked.stderr
    assert "Trusted comment: timestamp:" in checked.stdout and "serial:4" in checked.stdout

    ours = appban("policy", "verify", "banlist.yaml", "--public-key", "list.pub", cwd=publisher)
    assert ours.returncode == 0 and "good signature" in ours.stdout and "serial 4" in ours.stdout


def test_verify_accepts_minisign_signatures_and_refuses_tampering(tmp_path: Path) -> None:
    assert minisign("-G", "-W", "-p", "m.pub", "-s", "m.key", cwd=tmp_path).returncode == 0
    (tmp_path / "banlist.yaml").write_bytes(banlist_yaml(9))
    assert minisign("-S", "-s", "m.key", "-m", "banlist.yaml", cwd=tmp_path).returncode == 0
    ok = appban("policy", "verify", "banlist.yaml", "--public-key", "m.pub", cwd=tmp_path)
    assert ok.returncode == 0 and "serial 9" in ok.stdout

    (tmp_path / "banlist.yaml").write_bytes(banlist_yaml(9).replace(b"Tiktok", b"Tiktak"))
    bad = appban("policy", "verify", "banlist.yaml", "--public-key", "m.pub", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1 and "signature verification failed" in bad.stderr


def test_sign_refuses_an_invalid_list(publisher: Path) -> None:
    (publisher / "banlist.yaml").write_bytes(banlist_yaml(4).replace(b"serial: 4", b"serial: four"))
    done = appban("policy", "sign", "banlist.yaml", "--secret-key", "list.key", cwd=publisher)
    assert done.returncode == 2 and "field 'serial'" in done.stderr
    assert not (publisher / "banlist.yaml.minisig").exists()


def test_keygen_that_cannot_write_the_public_key_leaves_the_old_pair_alone(publisher: Path) -> None:
    """With --force, writing the new secret key before finding the public key's folder missing
    would destroy the publisher's only secret key and leave no public key for the new one."""
    before = (publisher / "list.key").read_bytes()
    target = publisher / "absent" / "list.pub"
    done = appban("policy", "keygen", "--force", "--secret-key", "list.key", "--public-key", target, cwd=publisher)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"appban: key file {target}: cannot create: No such file or directory\n"
    assert (publisher / "list.key").read_bytes() == before
    fresh = appban("policy", "keygen", "--secret-key", "new.key", "--public-key", target, cwd=publisher)
    assert fresh.returncode == 2 and not (publisher / "new.key").exists()


def test_sign_to_an_unwritable_place_is_one_line(publisher: Path) -> None:
    (publisher / "banlist.yaml").write_bytes(banlist_yaml(4))
    target = publisher / "absent" / "banlist.yaml.minisig"
    done = appban("policy", "sign", "banlist.yaml", "--secret-key", "list.key", "--signature", target, cwd=publisher)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"appban: signature {target}: cannot write: No such file or directory\n"


def test_fetch_prints_what_changed_and_show_describes_the_list(tmp_path, pki, site, publisher) -> None:
    config = agent_config(tmp_path, pki, site.url(), public_line(publisher))
    publish(site, publisher, banlist_yaml(1, ("tiktok", "wechat")))
    first = appban("policy", "fetch", "--config", config)
    assert first.returncode == 0, first.stderr
    assert f"ban list {site.url()}: nothing -> serial 1 (signed by key" in first.stdout
    assert "2 added: tiktok, wechat" in first.stdout

    publish(site, publisher, banlist_yaml(2, ("wechat", "deepseek")))
    second = appban("policy", "fetch", "--config", config)
    assert "serial 1 -> serial 2" in second.stdout
    assert "1 added: deepseek" in second.stdout and "1 removed: tiktok" in second.stdout

    third = appban("policy", "fetch", "--config", config)
    assert "not modified (HTTP 304); serial 2" in third.stdout

    show = appban("policy", "show", "--config", config, "--format", "json")
    facts = json.loads(show.stdout)
    assert (facts["serial"], facts["signed"], facts["stale"], facts["entries"]) == (2, True, False, 2)
    assert facts["source"] == site.url()
    assert facts["signer"] == parse_public_key((publisher / "list.pub").read_text()).key_id_hex
    table = appban("policy", "show", "--config", config)
    assert "serial:" in table.stdout and "age:" in table.stdout and "stale:           no" in table.stdout


def test_check_uses_the_fetched_list_and_says_when_it_is_stale(tmp_path, pki, site, publisher) -> None:
    config = agent_config(tmp_path, pki, site.url(), public_line(publisher))
    expired = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=2)
    publish(site, publisher, banlist_yaml(3, expires=expired))
    inventory = inventory_with_tiktok(tmp_path)

    table = appban("check", "--config", config, "--inventory", inventory)
    assert table.returncode == 1, table.stderr
    text = " ".join(table.stdout.split())  # the table wraps long lines
    assert text.startswith("ban list serial 3 from https://127.0.0.1:")
    assert f"WARNING: the ban list is stale (expired {expired.isoformat()})" in text

    report = json.loads(appban("check", "--config", config, "--inventory", inventory, "--format", "json").stdout)
    assert report["banlist"]["stale"] is True and report["banlist"]["stale_since"] == expired.isoformat()
    show = json.loads(appban("policy", "show", "--config", config, "--format", "json").stdout)
    assert show["stale"] is True and show["stale_since"] == expired.isoformat()


def test_check_with_the_server_down(tmp_path, pki, site, publisher) -> None:
    key = public_line(publisher)
    publish(site, publisher, banlist_yaml(5))
    inventory = inventory_with_tiktok(tmp_path)
    assert appban("policy", "fetch", "--config", agent_config(tmp_path, pki, site.url(), key)).returncode == 0
    down = f"https://127.0.0.1:{free_port()}/banlist.yaml"
    config = agent_config(tmp_path, pki, down, key)

    cached = appban("check", "--config", config, "--inventory", inventory)
    assert cached.returncode == 1
    assert cached.stderr.splitlines()[0].startswith(
        f"appban: warning: ban list {down}: connection refused (server down?); keeping serial 5 fetched ")
    assert "ban list serial 5" in cached.stdout

    fetch = appban("policy", "fetch", "--config", config)
    assert fetch.returncode == 2 and fetch.stdout == "" and len(fetch.stderr.splitlines()) == 1
    assert "connection refused (server down?); keeping serial 5" in fetch.stderr

    empty = appban("check", "--config", config, "--state-dir", tmp_path / "empty", "--inventory", inventory)
    assert empty.returncode == 2 and empty.stdout == ""
    assert empty.stderr == f"appban: ban list {down}: connection refused (server down?); no ban list in force\n"


def test_check_with_a_url_on_the_command_line(tmp_path, pki, site, publisher) -> None:
    publish(site, publisher, banlist_yaml(6))
    config = agent_config(tmp_path, pki, "https://127.0.0.1:9/unused.yaml", public_line(publisher))
    done = appban("check", "--config", config, "--banlist", site.url(), "--inventory", inventory_with_tiktok(tmp_path),
                  "--format", "json")
    assert done.returncode == 1
    signer = parse_public_key((publisher / "list.pub").read_text()).key_id_hex
    assert json.loads(done.stdout)["banlist"] == {
        "serial": 6, "source": site.url(), "signed": True, "stale": False, "stale_since": None, "signer": signer}

    plain = appban("check", "--config", config, "--banlist", "http://127.0.0.1:9/b.yaml")
    assert plain.returncode == 2 and "only https:// URLs are accepted" in plain.stderr
