"""`appban run` as a real subprocess: the pull endpoint (scraped by a real Prometheus), signals,
the single-instance lock, config reload, and push through the outbox across a kill -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import REPO, require_tool
from tests.banlist_fixtures import nginx, pki, site  # noqa: F401 - fixtures used by name
from tests.banlist_servers import Site, free_port, make_pki
from tests.service_support import APPBAN, BANLIST, TOKEN, Daemon, Receiver, direct_env, wait_until, write_config

HTTP_TIMEOUT = 30.0
REPORT_SCHEMA = json.loads((REPO / "docs/schemas/report-v1.schema.json").read_text())


def get(url: str, token: str | None = TOKEN, method: str = "GET") -> tuple[int, bytes]:
    """Return (status, body) of a request to the endpoint, with or without the bearer token."""
    request = urllib.request.Request(url, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def healthy(base: str) -> bool:
    try:
        return get(base + "/healthz", token=None)[0] == 200
    except OSError:
        return False


@pytest.fixture
def running(tmp_path: Path):
    """A daemon with the pull endpoint on a free port; yields (daemon, base URL, config path)."""
    port = free_port()
    config = write_config(tmp_path, server={"listen": f"127.0.0.1:{port}", "token_file": str(tmp_path / "token")})
    daemon = Daemon(config)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(base))
        wait_until(lambda: get(base + "/v1/report")[0] == 200)
        yield daemon, base, config
    finally:
        daemon.stop()


def test_endpoint_serves_the_check_report_and_refuses_without_token(running, tmp_path: Path) -> None:
    daemon, base, config = running
    assert get(base + "/v1/report", token=None)[0] == 401
    assert get(base + "/v1/report", token="wrong")[0] == 401
    assert get(base + "/metrics", token=None)[0] == 401
    assert get(base + "/nowhere")[0] == 404
    assert get(base + "/v1/report", method="POST")[0] == 405
    assert get(base + "/v1/report", method="DELETE")[0] == 405

    served = json.loads(get(base + "/v1/report")[1])
    jsonschema.validate(served, REPORT_SCHEMA)
    check = subprocess.run([APPBAN, "check", "--config", str(config), "--format", "json"],
                           capture_output=True, timeout=60)
    assert check.returncode == 1, check.stderr
    expected = json.loads(check.stdout)
    assert served.keys() == expected.keys()
    assert served["id"] != expected["id"]
    for key in ("format", "banlist", "devices", "counts", "errors", "complete", "compliant"):
        assert served[key] == expected[key], key
    assert [(f["entry"], f["status"], f["app"]["id"]) for f in served["findings"]] == \
        [(f["entry"], f["status"], f["app"]["id"]) for f in expected["findings"]]
    assert served["counts"] == {"violation": 1, "advisory": 1, "upcoming": 0, "exempt": 0}

    inventory = json.loads(get(base + "/v1/inventory")[1])
    assert inventory["format"] == "appban.inventory/v1"
    assert sorted(a["id"] for a in inventory["apps"]) == ["bash", "tiktok-desktop", "wechat"]

    saved = json.loads((tmp_path / "state" / "report.json").read_text())
    assert saved["id"] == served["id"]


def test_a_serving_service_holds_no_http_client_mail_or_tls_code(tmp_path: Path, monkeypatch) -> None:
    """Issue 14 (the idle service's memory): with the endpoint on and no TLS configured, the
    service answers without http.server, which brings http.client, the email package and ssl,
    and maps no libcrypto (3.5 MiB of resident memory; hmac and secrets map it too). Scraped
    by Prometheus it stays so: /metrics is written by agent.exposition, not prometheus_client,
    whose package imports its own HTTP server and client (~7.5 MiB)."""
    monkeypatch.setenv("PYTHONVERBOSE", "1")  # the daemon writes "import 'name' # ..." to stderr for each module
    port = free_port()
    daemon = Daemon(write_config(tmp_path, server={"listen": f"127.0.0.1:{port}", "token_file": str(tmp_path / "token")}))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(base))
        wait_until(lambda: get(base + "/v1/report")[0] == 200)
        assert get(base + "/v1/report", token="wrong")[0] == 401
        scrapes = [get(base + "/metrics") for _ in range(3)]
        lines = daemon.log_path.read_text().splitlines()
        maps = Path(f"/proc/{daemon.process.pid}/maps").read_text() if Path("/proc/self/maps").exists() else ""
    finally:
        daemon.stop()
    assert all(status == 200 for status, _ in scrapes)
    assert b'appban_findings{entry="tiktok",status="violation"} 1.0\n' in scrapes[-1][1]
    imported = {line.split("'")[1] for line in lines if line.startswith("import '")}
    assert {"agent.service.server", "agent.inventory.dpkg", "agent.exposition"} <= imported
    assert not {"http.server", "http.client", "email", "ssl", "_ssl", "_hashlib", "hmac", "secrets", "shutil",
                "prometheus_client", "urllib.request", "gzip"} & imported
    assert "libcrypto" not in maps and "libssl" not in maps


def test_status_then_sigterm_exits_zero(running, tmp_path: Path) -> None:
    daemon, _, config = running
    status = subprocess.run([APPBAN, "status", "--config", str(config), "--format", "json"],
                            capture_output=True, timeout=30)
    assert status.returncode == 0, status.stderr
    facts = json.loads(status.stdout)
    assert facts["pid"] == daemon.process.pid
    assert facts["serial"] == 7 and facts["counts"]["violation"] == 1 and facts["last_scan"] is not None
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert daemon.events("service.stopped")
    after = subprocess.run([APPBAN, "status", "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert after.returncode == 3
    assert "not running" in after.stdout and "serial 7" in after.stdout


def test_second_instance_is_refused(running) -> None:
    daemon, _, config = running
    second = subprocess.run([APPBAN, "run", "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert second.returncode == 2
    assert f"pid {daemon.process.pid}" in second.stderr and "appban.lock" in second.stderr
    assert daemon.process.poll() is None


def test_sighup_with_broken_config_keeps_the_old_one(running, tmp_path: Path) -> None:
    daemon, base, config = running
    good = config.read_text()
    config.write_text(good.replace("scan: 1h", "scan: often"))
    daemon.signal(signal.SIGHUP)
    rejected = wait_until(lambda: daemon.events("config.rejected"))
    assert "schedule.scan" in rejected[0]["error"]
    assert daemon.process.poll() is None
    assert get(base + "/v1/report")[0] == 200

    (tmp_path / "token2").write_text("rotated-token-abcdef\n")
    config.write_text(good.replace(str(tmp_path / "token"), str(tmp_path / "token2")))
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: daemon.events("config.reloaded"))
    wait_until(lambda: healthy(base))
    assert get(base + "/v1/report")[0] == 401
    assert get(base + "/v1/report", token="rotated-token-abcdef")[0] == 200
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_prometheus_scrapes_findings_over_tls_with_the_bearer_token(tmp_path: Path) -> None:
    prometheus_path = require_tool("prometheus")
    pki = make_pki(tmp_path / "pki")
    agent_port, port = free_port(), free_port()
    config = write_config(tmp_path, server={
        "listen": f"127.0.0.1:{agent_port}", "token_file": str(tmp_path / "token"),
        "tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key)})
    (tmp_path / "prometheus.yml").write_text(f"""\
global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: appban
    scheme: https
    tls_config: {{ca_file: {pki.ca}}}
    authorization: {{credentials_file: {tmp_path / 'token'}}}
    static_configs: [{{targets: ["127.0.0.1:{agent_port}"]}}]
""")
    daemon = Daemon(config)
    prometheus = subprocess.Popen(
        [prometheus_path, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    query = urllib.parse.urlencode({"query": 'appban_findings{status="violation"}'})

    def violation_series() -> list:
        try:
            status, body = get(f"http://127.0.0.1:{port}/api/v1/query?{query}", token=None)
        except OSError:
            return []
        return json.loads(body)["data"]["result"] if status == 200 else []

    try:
        series = wait_until(violation_series, timeout=30, step=0.5)
        assert series[0]["metric"]["entry"] == "tiktok"
        assert series[0]["value"][1] == "1"
        targets = json.loads(get(f"http://127.0.0.1:{port}/api/v1/targets", token=None)[1])
        assert targets["data"]["activeTargets"][0]["health"] == "up"
        # the HELP and TYPE lines as Prometheus read them: a counter's carry its _total name
        metadata = wait_until(lambda: json.loads(get(f"http://127.0.0.1:{port}/api/v1/metadata", token=None)[1])["data"])
        assert metadata["appban_push_dropped_total"] == [
            {"type": "counter", "help": "Reports dropped because the outbox was full.", "unit": ""}]
        assert metadata["appban_findings"][0]["type"] == "gauge"
        query = urllib.parse.urlencode({"query": "appban_push_dropped_total"})
        dropped = json.loads(get(f"http://127.0.0.1:{port}/api/v1/query?{query}", token=None)[1])["data"]["result"]
        assert [s["value"][1] for s in dropped] == ["0"]
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        daemon.stop()


def outbox_ids(state: Path) -> list[str]:
    with sqlite3.connect(state / "outbox.sqlite") as db:
        return [row[0] for row in db.execute("SELECT id FROM outbox ORDER BY seq")]


def test_push_delivers_every_report_exactly_once_across_kill_9(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    receiver = Receiver(pki)
    push = {"url": receiver.url, "token_file": str(tmp_path / "push-token"), "ca_bundle": str(pki.ca),
            "client_cert": str(pki.client_cert), "client_key": str(pki.client_key), "timeout": 2.0}
    config = write_config(tmp_path, push=push, schedule={"scan": "1s", "push": "1s", "splay": "1s"})
    state = tmp_path / "state"
    first = Daemon(config)
    try:
        wait_until(lambda: len(first.events("scan.done")) >= 3)
        wait_until(lambda: first.events("push.failed"))
        first.signal(signal.SIGKILL)
        first.wait()
    finally:
        first.stop()
    queued_before_kill = outbox_ids(state)
    made_before_kill = [e["report"] for e in first.events("scan.done")]
    assert len(queued_before_kill) >= 3 and set(queued_before_kill) <= set(made_before_kill)

    receiver.start()
    second = Daemon(config)
    try:
        wait_until(lambda: len(second.events("scan.done")) >= 2 and not outbox_ids(state))
        second.signal(signal.SIGTERM)
        assert second.wait() == 0
    finally:
        second.stop()
        receiver.stop()
    made = made_before_kill + [e["report"] for e in second.events("scan.done")]
    left = outbox_ids(state)
    counts = receiver.counts()
    assert set(queued_before_kill) <= set(counts)
    assert set(counts) == set(made) - set(left)
    assert all(count == 1 for count in counts.values()), counts
    assert all(key == report_id for key, report_id in receiver.deliveries)


def test_status_reports_not_running_without_state(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = subprocess.run([APPBAN, "status", "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 3
    assert "not running" in result.stdout and "no scan yet" in result.stdout
    assert not (tmp_path / "state" / "outbox.sqlite").exists()


def test_a_fifo_database_does_not_block_the_scan_or_the_stop(tmp_path: Path) -> None:
    """The dpkg database is a named pipe (planted, or left by a tool): the scan refuses to read
    it (one error), finishes, and a SIGTERM stops the service at once. (Before issue 11 the
    scan blocked on the pipe and a stop waited for it.)"""
    config = write_config(tmp_path)
    status = tmp_path / "root" / "var" / "lib" / "dpkg" / "status"
    status.unlink()
    os.mkfifo(status)
    daemon = Daemon(config)
    try:
        done = wait_until(lambda: daemon.events("scan.done"), timeout=40)
        assert done[0]["errors"] == 1
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        inventory = json.loads((tmp_path / "state" / "inventory.json").read_text())
        assert "not a regular file (FIFO)" in inventory["errors"][0]["message"]
    finally:
        daemon.stop()


def sign_with_appban(folder: Path, data: bytes) -> tuple[str, bytes]:
    """Make a key pair with `appban policy keygen`, sign `data` with `appban policy sign`; return
    (public key line, signature)."""
    folder.mkdir(exist_ok=True)
    if not (folder / "list.key").exists():
        made = subprocess.run([APPBAN, "policy", "keygen", "--secret-key", "list.key", "--public-key", "list.pub"],
                              cwd=folder, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert made.returncode == 0, made.stderr
    (folder / "banlist.yaml").write_bytes(data)
    signed = subprocess.run([APPBAN, "policy", "sign", "banlist.yaml", "--secret-key", "list.key"],
                            cwd=folder, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert signed.returncode == 0, signed.stderr
    return (folder / "list.pub").read_text().splitlines()[1], (folder / "banlist.yaml.minisig").read_bytes()


@pytest.fixture
def nginx_site(request: pytest.FixtureRequest) -> Site:
    """A corner of a real nginx's docroot (skipped without nginx on a developer machine)."""
    require_tool("nginx")
    return request.getfixturevalue("site")


def test_daemon_fetches_the_signed_list_and_picks_up_a_new_serial(tmp_path: Path, pki, nginx_site: Site) -> None:
    site = nginx_site
    key, signature = sign_with_appban(tmp_path / "publisher", BANLIST.replace("serial: 7", "serial: 30").encode())
    site.put("banlist.yaml.minisig", signature)
    site.put("banlist.yaml", (tmp_path / "publisher" / "banlist.yaml").read_bytes())
    port = free_port()
    config = write_config(
        tmp_path, server={"listen": f"127.0.0.1:{port}", "token_file": str(tmp_path / "token")},
        banlist={"url": site.url(), "trusted_keys": [key], "ca_bundle": str(pki.ca), "timeout": 10.0,
                 "retries": 2, "backoff": 0.1, "refresh": "1h"},
    )
    base = f"http://127.0.0.1:{port}"
    daemon = Daemon(config)
    try:
        wait_until(lambda: get(base + "/v1/report")[0] == 200 if healthy(base) else False, timeout=40)
        report = json.loads(get(base + "/v1/report")[1])
        assert report["banlist"]["serial"] == 30 and report["banlist"]["signed"] is True
        assert report["banlist"]["source"] == site.url()
        assert report["counts"]["violation"] == 1

        new = BANLIST.replace("serial: 7", "serial: 31").replace("[tiktok-desktop]", "[tiktok-other]")
        key, signature = sign_with_appban(tmp_path / "publisher", new.encode())
        site.put("banlist.yaml.minisig", signature)
        site.put("banlist.yaml", (tmp_path / "publisher" / "banlist.yaml").read_bytes())
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: json.loads(get(base + "/v1/report")[1])["banlist"]["serial"] == 31, timeout=40)
        assert json.loads(get(base + "/v1/report")[1])["counts"]["violation"] == 0

        site.put("banlist.yaml", new.replace("serial: 31", "serial: 32").encode())
        daemon.signal(signal.SIGHUP)
        failed = wait_until(lambda: daemon.events("refresh.failed"), timeout=40)
        assert "serial 31" in failed[0]["error"]
        assert json.loads(get(base + "/v1/report")[1])["banlist"]["serial"] == 31
        status = subprocess.run([APPBAN, "status", "--config", str(config)], capture_output=True, text=True,
                                timeout=30, env=direct_env())
        assert "serial 31" in status.stdout and "last attempt failed" in status.stdout
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.stop()


def test_unusable_outbox_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "outbox.sqlite").write_bytes(b"not a database, " * 100)
    result = subprocess.run([APPBAN, "run", "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr == f"appban: outbox in {tmp_path / 'state'}: file is not a database\n"


def test_unusable_state_dir_or_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    config = write_config(tmp_path)
    result = subprocess.run([APPBAN, "run", "--config", str(config), "--state-dir", str(tmp_path / "file" / "state")],
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (2, f"appban: state_dir {tmp_path / 'file' / 'state'}: Not a directory\n")

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        config = write_config(tmp_path, server={"listen": f"127.0.0.1:{port}", "token_file": str(tmp_path / "token")})
        result = subprocess.run([APPBAN, "run", "--config", str(config)], capture_output=True, text=True, timeout=30)
    finally:
        taken.close()
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == f"appban: server.listen 127.0.0.1:{port}: cannot listen: Address already in use"
