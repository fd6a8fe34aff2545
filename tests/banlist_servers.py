"""HTTPS servers on 127.0.0.1 for the ban-list distribution tests and benchmark.

`Nginx` runs the real web server from Debian's `nginx` package with its own prefix, config, pid
file and logs in a temporary directory, on free ports, with a certificate made here by a test CA
(`make_pki`). It serves files from a docroot, answers conditional GETs with 304 as any production
nginx does, returns 500 for a file while `<file>.fail` exists (so a test can break and heal the
server), and has a second port that requires a client certificate (mutual TLS).

`ScriptedServer` covers what a well-behaved nginx will not do on demand: answer 503 a given
number of times, hang, cut a body short, or stream an endless body without a length. It is
Python's http.server in a thread behind the same test certificate.

The pytest fixtures over these (`pki`, `nginx`, `scripted`, `site`, `direct`) are in
tests/banlist_fixtures.py, so the benchmarks can use the servers without pytest installed;
`banlist_yaml` and `Site` publish signed lists into nginx's docroot.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.banlist.signature import SecretKey, sign

START_TIMEOUT = 10.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Pki:
    """A test CA, a server certificate for 127.0.0.1/localhost, a client certificate, and an
    unrelated CA (for the wrong-CA case); all PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer_name: str, issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool, usage: x509.ObjectIdentifier | None = None, sans: tuple[x509.GeneralName, ...] = (),
) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        assert usage is not None
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def make_pki(folder: Path) -> Pki:
    """Create the test CA and certificates under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, other_key, server_key, client_key = _key(), _key(), _key(), _key()
    ca = _cert("appban test CA", ca_key, "appban test CA", ca_key, ca=True)
    other = _cert("unrelated test CA", other_key, "unrelated test CA", other_key, ca=True)
    server = _cert("localhost", server_key, "appban test CA", ca_key, ca=False,
                   usage=ExtendedKeyUsageOID.SERVER_AUTH,
                   sans=(x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))))
    client = _cert("appban agent", client_key, "appban test CA", ca_key, ca=False,
                   usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(
        ca=_pem(ca, folder / "ca.pem"),
        server_cert=_pem(server, folder / "server.pem"), server_key=_write_key(server_key, folder / "server.key"),
        client_cert=_pem(client, folder / "client.pem"), client_key=_write_key(client_key, folder / "client.key"),
        other_ca=_pem(other, folder / "other-ca.pem"),
    )


NGINX_CONF = """\
worker_processes 1;
{user}
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log info;
events {{ worker_connections 128; }}
http {{
    access_log {run}/access.log;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    default_type application/octet-stream;
    ssl_certificate {pki.server_cert};
    ssl_certificate_key {pki.server_key};
    server {{
        listen 127.0.0.1:{port} ssl;
        root {docroot};
        location / {{
            if (-f $request_filename.fail) {{ return 500; }}
        }}
        location /moved/ {{ rewrite ^/moved/(.*)$ https://127.0.0.1:{port}/$1 permanent; }}
        location /downgrade/ {{ rewrite ^/downgrade/(.*)$ http://127.0.0.1:{port}/$1 permanent; }}
    }}
    server {{
        listen 127.0.0.1:{mtls_port} ssl;
        ssl_client_certificate {pki.ca};
        ssl_verify_client on;
        root {docroot};
    }}
}}
"""


class Nginx:
    """A real nginx serving `docroot` over HTTPS on 127.0.0.1 (see the module docstring)."""

    def __init__(self, workdir: Path, pki: Pki) -> None:
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.run_dir = workdir / "nginx"
        self.docroot = workdir / "www"
        self.pki = pki
        self.port = 0
        self.mtls_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def access_log(self) -> Path:
        return self.run_dir / "access.log"

    def url(self, path: str, mtls: bool = False) -> str:
        return f"https://127.0.0.1:{self.mtls_port if mtls else self.port}/{path.lstrip('/')}"

    def requests_for(self, path: str) -> list[str]:
        """Return the access-log lines of requests for `path` (nginx writes them unbuffered, after the answer)."""
        if not self.access_log.exists():
            return []
        needle = f" /{path.lstrip('/')} "
        return [line for line in self.access_log.read_text().splitlines() if needle in line]

    def start(self) -> Nginx:
        """Start nginx in the foreground under this object; raise RuntimeError if it does not come up."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.docroot.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self.port, self.mtls_port = free_port(), free_port()
            conf = self.run_dir / "nginx.conf"
            user = "user root;" if os.geteuid() == 0 else ""
            conf.write_text(NGINX_CONF.format(user=user, run=self.run_dir, pki=self.pki, port=self.port,
                                              mtls_port=self.mtls_port, docroot=self.docroot))
            self.process = subprocess.Popen(
                [self.binary, "-p", str(self.run_dir), "-c", str(conf), "-e", str(self.run_dir / "error.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"nginx did not start: {(self.run_dir / 'error.log').read_text()[-2000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    with socket.create_connection(("127.0.0.1", self.mtls_port), timeout=0.2):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop nginx (SIGTERM: fast shutdown) and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None


ENDLESS_LIMIT = 512 * 1024 * 1024
"""What an "endless" answer sends at most: beyond every client cap in the tests (256 MiB for MDM
APIs), yet bounded, so a client whose cap was removed fails its test instead of exhausting memory."""


class ScriptedServer:
    """An HTTPS server on 127.0.0.1 that answers each request with the next scripted step.

    Steps: ("status", code) · ("body", bytes) · ("hang", None) — wait until the server stops ·
    ("truncate", bytes) — promise len+100 bytes, send these, close · ("endless", None) — stream
    without Content-Length forever · ("trickle", bytes) — send the body a byte every 0.2 s ·
    ("trickle-headers", None) — send a header line every 0.2 s, never ending the headers ·
    ("gated", bytes) — send the body once `gate` is set · ("reason", (code, phrase)) — a status
    with that reason phrase. The last step repeats once the script
    runs out.
    """

    def __init__(self, pki: Pki) -> None:
        self.steps: list[tuple[str, object]] = [("status", 404)]
        self.requests: list[str] = []
        self.released = threading.Event()
        self.gate = threading.Event()
        self.waiting = threading.Event()
        """Set while a "gated" answer waits for `gate`."""
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests.append(self.path)
                kind, value = server.steps.pop(0) if len(server.steps) > 1 else server.steps[0]
                server.answer(self, kind, value)

            do_POST = do_GET  # noqa: N815 - a push receiver that misbehaves the same ways

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"scripted-https-{self.port}",
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def script(self, *steps: tuple[str, object]) -> None:
        self.steps = list(steps)
        self.requests.clear()

    def answer(self, handler: http.server.BaseHTTPRequestHandler, kind: str, value: object) -> None:
        if kind == "hang":
            self.released.wait(30)
            return
        if kind in ("status", "reason"):
            code, phrase = value if kind == "reason" else (value, None)  # type: ignore[misc]
            handler.send_response(int(code), phrase)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if kind == "trickle-headers":
            handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for number in range(10_000):
                if self.released.wait(0.2):
                    return
                try:
                    handler.wfile.write(f"X-Slow-{number}: 1\r\n".encode())
                    handler.wfile.flush()
                except OSError:
                    return
            return
        handler.send_response(200)
        if kind in ("trickle", "gated"):
            body = bytes(value)  # type: ignore[arg-type]
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.flush()
            if kind == "gated":
                self.waiting.set()
                self.gate.wait(30)
                handler.wfile.write(body)
                return
            for byte in body:
                if self.released.wait(0.2):
                    return
                try:
                    handler.wfile.write(bytes([byte]))
                    handler.wfile.flush()
                except OSError:
                    return
            return
        if kind == "endless":
            handler.end_headers()
            handler.close_connection = True
            chunk = b"# padding\n" * 6000
            sent = 0
            while not self.released.is_set() and sent < ENDLESS_LIMIT:  # bounded, so a client
                sent += len(chunk)  # without its size cap fails the test instead of running out of memory
                try:
                    handler.wfile.write(chunk)
                except OSError:
                    return
            return
        body = bytes(value)  # type: ignore[arg-type]
        handler.send_header("Content-Length", str(len(body) + (100 if kind == "truncate" else 0)))
        handler.end_headers()
        handler.wfile.write(body)
        if kind == "truncate":
            handler.close_connection = True

    def start(self) -> ScriptedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def banlist_yaml(serial: int, ids: tuple[str, ...] = ("tiktok", "wechat"), expires: datetime | None = None,
                 names: dict[str, str] | None = None) -> bytes:
    """Return a small valid ban list: one entry per id, matched by an executable of that name."""
    lines = ["format: appban.banlist/v1", f"serial: {serial}", "issued: 2026-11-01T00:00:00Z"]
    if expires is not None:
        lines.append(f"expires: {expires.isoformat()}")
    lines.append("entries:")
    for entry_id in ids:
        name = (names or {}).get(entry_id, entry_id.title())
        lines += [f"  - id: {entry_id}", f"    name: {name}", "    match:", f"      executables: [{entry_id}]"]
    return ("\n".join(lines) + "\n").encode()


class Site:
    """One test's corner of the nginx docroot: publishes lists and signatures there."""

    def __init__(self, nginx: Nginx, name: str) -> None:
        self.nginx = nginx
        self.folder = nginx.docroot / name
        self.folder.mkdir()
        self.name = name
        self.clock = 1_700_000_000

    def path(self, file: str = "banlist.yaml") -> str:
        return f"{self.name}/{file}"

    def url(self, file: str = "banlist.yaml", mtls: bool = False) -> str:
        return self.nginx.url(self.path(file), mtls=mtls)

    def put(self, file: str, data: bytes) -> None:
        target = self.folder / file
        target.write_bytes(data)
        self.clock += 10  # a new mtime, so nginx gives changed bytes a new ETag even within a second
        os.utime(target, (self.clock, self.clock))

    def publish(self, data: bytes, key: SecretKey | None, file: str = "banlist.yaml") -> None:
        """Put the list and (when a key is given) its signature; with no key, remove the signature."""
        if key is None:
            (self.folder / f"{file}.minisig").unlink(missing_ok=True)
        else:
            self.put(f"{file}.minisig", sign(data, key, f"serial list for {self.name}").encode())
        self.put(file, data)

    def statuses(self, file: str = "banlist.yaml", expected: int = 0) -> list[str]:
        """Return the HTTP status of every request nginx logged for this file, in order.

        nginx writes a request's log line after it has sent the answer, so a client can see its
        last answer before that line exists: wait (up to 10 s) until `expected` lines are logged.
        """
        lines = self.nginx.requests_for(self.path(file))
        ends = time.monotonic() + 10.0
        while len(lines) < expected and time.monotonic() < ends:
            time.sleep(0.01)
            lines = self.nginx.requests_for(self.path(file))
        return [line.split('" ')[1].split()[0] for line in lines]
