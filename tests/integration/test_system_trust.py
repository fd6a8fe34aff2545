"""TLS trust like the rest of the system: a private CA added the Debian way — a .crt in
usr/local/share/ca-certificates and the real `update-ca-certificates`, here run on a throwaway
root through its --certsconf/--certsdir/--localcertsdir/--etccertsdir/--hooksdir options — is
trusted by `appban check` fetching its list from a real nginx on 127.0.0.1, through OpenSSL's
SSL_CERT_FILE pointing at that root's bundle; the certifi bundle requests would use rejects the
same server, and the config's `ca_bundle` remains the override."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import certifi
import pytest
import requests
import yaml

from tests.banlist_fixtures import direct, nginx, pki  # noqa: F401 - fixtures
from tests.banlist_servers import Site, banlist_yaml
from tests.conftest import REPO, require_tool


@pytest.fixture
def trust_root(tmp_path: Path, pki) -> Path:  # noqa: F811 - the pki fixture
    """Return a throwaway root whose CA bundle update-ca-certificates built with the test CA in it."""
    tool = require_tool("update-ca-certificates")
    root = tmp_path / "sys"
    local = root / "usr/local/share/ca-certificates"
    for folder in (local, root / "usr/share/ca-certificates", root / "etc/ssl/certs", root / "etc/ca-certificates/update.d"):
        folder.mkdir(parents=True)
    (root / "etc/ca-certificates.conf").write_text("")
    (local / "appban-test-ca.crt").write_bytes(pki.ca.read_bytes())
    done = subprocess.run([tool, "--fresh", "--certsconf", str(root / "etc/ca-certificates.conf"),
                           "--certsdir", str(root / "usr/share/ca-certificates"), "--localcertsdir", str(local),
                           "--etccertsdir", str(root / "etc/ssl/certs"),
                           "--hooksdir", str(root / "etc/ca-certificates/update.d")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 added" in done.stdout
    return root


def check(tmp_path: Path, url: str, env: dict[str, str], **banlist: str) -> subprocess.CompletedProcess[str]:
    tmp_path.mkdir(exist_ok=True)
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "inventory": {"sources": ["process"]},
                                      "banlist": {"url": url, "allow_unsigned": True, "retries": 0, **banlist}}))
    clean = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
                                                                  "CURL_CA_BUNDLE")}
    return subprocess.run([sys.executable, "-m", "agent", "check", "--config", str(config), "--format", "json"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env={**clean, **env})


@pytest.mark.usefixtures("direct")
def test_a_ca_added_the_system_way_is_trusted_and_certifi_would_not(tmp_path: Path, nginx, trust_root: Path,  # noqa: F811
                                                                   pki) -> None:  # noqa: F811
    site = Site(nginx, "trust")
    site.publish(banlist_yaml(5), None)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(site.url(), verify=certifi.where(), timeout=10)

    bundle = trust_root / "etc/ssl/certs/ca-certificates.crt"
    trusted = check(tmp_path, site.url(), {"SSL_CERT_FILE": str(bundle)})
    assert trusted.returncode in (0, 1), trusted.stderr
    assert json.loads(trusted.stdout)["banlist"]["serial"] == 5

    without = check(tmp_path / "without", site.url(), {"SSL_CERT_FILE": str(pki.other_ca)})
    assert without.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in without.stderr

    override = check(tmp_path / "override", site.url(), {"SSL_CERT_FILE": str(pki.other_ca)}, ca_bundle=str(pki.ca))
    assert override.returncode in (0, 1), override.stderr
