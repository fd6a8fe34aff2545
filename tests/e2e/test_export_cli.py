"""`appban policy export` as a subprocess: files written atomically, notes on stderr, exit codes,
and the signer of a list fetched from real nginx over HTTPS named in the header."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml

from agent.banlist.signature import generate_keypair
from tests.banlist_fixtures import nginx, pki, site  # noqa: F401 - fixtures used by name
from tests.banlist_servers import Pki, Site
from tests.conftest import require_tool, run_cli
from tests.export_support import QUEBEC


def quebec_file(tmp_path: Path) -> Path:
    path = tmp_path / "quebec.yaml"
    path.write_text(yaml.safe_dump(QUEBEC, allow_unicode=True))
    return path


def test_export_writes_the_file_and_says_what_it_did(tmp_path: Path) -> None:
    listing, out = quebec_file(tmp_path), tmp_path / "out" / "appban.conf"
    out.parent.mkdir()
    done = run_cli("policy", "export", "--to", "unbound", "--group", "staff", "--banlist", str(listing), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    text = out.read_text()
    assert 'local-zone: "tiktokv.com." always_nxdomain' in text
    assert f"# Command: appban policy export --to unbound --group staff --banlist {listing}" in text
    assert "exported 1 entry of ban list serial 42 as unbound" in done.stderr
    assert "unbound cannot express: exact-only matching" in done.stderr


def test_export_for_an_advisory_group_blocks_nothing(tmp_path: Path) -> None:
    done = run_cli("policy", "export", "--to", "amapi", "--group", "deputies", "--banlist", str(quebec_file(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"applications": []}


def test_export_of_the_bundled_list_needs_no_config(tmp_path: Path) -> None:
    done = run_cli("policy", "export", "--to", "hosts", "--group", "assembly-staff", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "0.0.0.0 tiktokv.com" in done.stdout and "bundled example" in done.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = run_cli("policy", "export", "--to", "hosts", "--banlist", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "cannot read" in missing.stderr
    unwritable = run_cli("policy", "export", "--to", "hosts", "--banlist", str(quebec_file(tmp_path)),
                         "-o", str(tmp_path / "no-such-dir" / "hosts"))
    assert unwritable.returncode == 2 and "cannot write" in unwritable.stderr and "Traceback" not in unwritable.stderr
    unknown = run_cli("policy", "export", "--to", "pf")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr


def test_a_fetched_signed_list_is_exported_with_its_signer(tmp_path: Path, pki: Pki, site: Site) -> None:
    require_tool("nginx")
    secret, public = generate_keypair()
    site.publish(yaml.safe_dump(QUEBEC, allow_unicode=True).encode(), secret)
    config = tmp_path / "agent.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nbanlist:\n  url: {site.url()}\n"
                      f"  trusted_keys: [{public.to_base64()}]\n  ca_bundle: {pki.ca}\n  timeout: 5\n")
    env = {"NO_PROXY": "127.0.0.1,localhost"}
    assert run_cli("policy", "fetch", "--config", str(config), env=env).returncode == 0
    done = run_cli("policy", "export", "--to", "rpz", "--group", "staff", "--config", str(config), env=env)
    assert done.returncode == 0, done.stderr
    assert f"; Ban list serial 42, signed by key {public.key_id_hex}, from {site.url()}" in done.stdout
    assert "tiktokv.com CNAME ." in done.stdout


def test_the_header_command_reproduces_the_export_even_with_odd_group_names(tmp_path: Path) -> None:
    listing = quebec_file(tmp_path)
    document = yaml.safe_load(listing.read_text())
    document["entries"][0]["applies_to"] = ["staff; rm -rf /"]
    listing.write_text(yaml.safe_dump(document, allow_unicode=True))
    first = run_cli("policy", "export", "--to", "adguard", "--group", "staff; rm -rf /", "--banlist", str(listing))
    assert first.returncode == 0, first.stderr
    command = next(line for line in first.stdout.splitlines() if line.startswith("! Command: "))
    assert "--group 'staff; rm -rf /'" in command
    again = run_cli(*shlex.split(command[len("! Command: "):])[1:])
    assert again.returncode == 0 and [l for l in again.stdout.splitlines() if not l.startswith("! Scope")] == \
        [l for l in first.stdout.splitlines() if not l.startswith("! Scope")]
