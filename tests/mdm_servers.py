"""Stand-in servers for the three MDM clouds, speaking their documented APIs on 127.0.0.1.

The Android Management API, Microsoft Graph (with its login endpoint) and Jamf Pro cannot be
reached from a test, so `StandIn` runs a small app behind Python's http.server, over TLS with a
certificate made by the test CA (tests/banlist_servers.py `make_pki`) or over plain http (which
appban allows to 127.0.0.1 only). Each app serves objects from tests/fixtures/mdm-api (whose
README names the documentation page of every field), checks what appban sends — bearer tokens it
issued and that have not expired, the JWT assertion's signature and claims, paging parameters —
and records every request in `seen`, so a test asserts paths, query strings and bodies.

`faults` lets a test make the next requests to a path answer 429 with `Retry-After`, a 5xx, or a
401 (a token revoked mid-run) before the app answers again.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import http.server
import io
import json
import ssl
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mdm-api"
Reply = tuple[int, dict[str, str], bytes]


def fixture(name: str) -> dict[str, Any]:
    """Return one documented object, without its `_documentation` note."""
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    data.pop("_documentation", None)
    return data


@dataclass(frozen=True)
class Seen:
    """One request as it reached the server: `path` still escaped, `query` decoded."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    at: float

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))

    def json(self) -> Any:
        return json.loads(self.body)


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return status, {"Content-Type": "application/json", **(headers or {})}, data


class StandIn:
    """An HTTP(S) server on 127.0.0.1 (free port) answering with `app(seen)`."""

    def __init__(self, app: Callable[[Seen], Reply], cert: tuple[Path, Path] | None = None) -> None:
        self.app = app
        self.seen: list[Seen] = []
        self.faults: list[tuple[str, Reply]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                seen = Seen(self.command, parts.path, parse_qsl(parts.query, keep_blank_values=True),
                            {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length), time.monotonic())
                status, headers, body = owner.handle(seen)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def handle(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            fault = next((f for f in self.faults if seen.path.startswith(f[0])), None)
            if fault is not None:
                self.faults.remove(fault)
                return fault[1]
        try:
            return self.app(seen)
        except Exception as exc:  # a stand-in bug shows as a 599 the test will see, not a hang
            return reply(599, {"error": {"message": f"stand-in: {type(exc).__name__}: {exc}"}})

    def fail(self, path: str, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Make the next `times` requests under `path` answer `status` (429s with Retry-After)."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = {"error": {"code": status, "status": "RESOURCE_EXHAUSTED" if status == 429 else "UNAVAILABLE",
                          "message": "stand-in fault"}}
        with self._lock:
            self.faults += [(path, reply(status, body, headers))] * times

    def requests(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(path)]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Tokens:
    """Bearer tokens a stand-in issued, with their expiry (wall clock) and a revocation switch."""

    lifetime: float = 3600.0
    issued: dict[str, float] = field(default_factory=dict)
    revoked: bool = False

    def issue(self) -> dict[str, Any]:
        token = f"standin-token-{len(self.issued) + 1}"
        self.issued[token] = time.time() + self.lifetime
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}

    def refusal(self, seen: Seen) -> Reply | None:
        """The 401 an API answers to a missing, unknown, expired or revoked token; None if valid."""
        token = seen.headers.get("authorization", "").removeprefix("Bearer ")
        expires = self.issued.get(token)
        if self.revoked or expires is None or time.time() >= expires:
            return reply(401, {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "invalid token"}})
        return None


def jwt_parts(assertion: str, public_key: rsa.RSAPublicKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify an RS256 JWT with the public key and return (header, claims). Raise if the signature is bad."""
    head, body, signature = assertion.split(".")
    pad = lambda text: base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))  # noqa: E731
    public_key.verify(pad(signature), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return json.loads(pad(head)), json.loads(pad(body))


class AmapiApp:
    """`enterprises.devices.list`, `policies.get` / `policies.patch` and the OAuth token endpoint
    (at `/token`, the key file's token_uri) of the Android Management API."""

    def __init__(self, enterprise: str, devices: list[dict[str, Any]], policies: dict[str, dict[str, Any]],
                 public_key: rsa.RSAPublicKey, tokens: Tokens | None = None) -> None:
        self.enterprise, self.devices, self.policies = enterprise, devices, policies
        self.public_key = public_key
        self.tokens = tokens or Tokens()
        self.patches: list[tuple[str, list[tuple[str, str]], Any]] = []
        self.token_uri = ""

    def __call__(self, seen: Seen) -> Reply:
        if seen.path == "/token":
            return self._token(seen)
        refused = self.tokens.refusal(seen)
        if refused:
            return refused
        devices_path = f"/v1/enterprises/{self.enterprise}/devices"
        name = unquote(seen.path.removeprefix("/v1/"))
        if seen.method == "GET" and unquote(seen.path) == devices_path:
            return self._devices(seen)
        if name in self.policies and seen.method == "GET":
            return reply(200, self.policies[name])
        if name in self.policies and seen.method == "PATCH":
            self.patches.append((name, seen.query, seen.json()))
            self.policies[name] = {**self.policies[name], **seen.json()}
            return reply(200, self.policies[name])
        return reply(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": f"{name} not found"}})

    def _token(self, seen: Seen) -> Reply:
        form = seen.form()
        if self.tokens.revoked:
            return reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer", form
        _, claims = jwt_parts(form["assertion"], self.public_key)
        assert claims["scope"] == "https://www.googleapis.com/auth/androidmanagement", claims
        assert claims["aud"] == self.token_uri and claims["exp"] > time.time(), claims
        return reply(200, self.tokens.issue())

    def _devices(self, seen: Seen) -> Reply:
        size, start = int(seen.param("pageSize") or 100), int(seen.param("pageToken") or 0)
        body: dict[str, Any] = {"devices": self.devices[start:start + size]}
        if start + size < len(self.devices):
            body["nextPageToken"] = str(start + size)
        return reply(200, body)


def amapi_device(number: int, enterprise: str = "LC01x7yq", policy: str = "government-phones",
                 ownership: str = "COMPANY_OWNED") -> dict[str, Any]:
    """The documented device fixture as device number `number` of `enterprise` on `policy`."""
    device = fixture("amapi-device.json")
    device["name"] = f"enterprises/{enterprise}/devices/{number:016x}"
    device["policyName"] = device["appliedPolicyName"] = f"enterprises/{enterprise}/policies/{policy}"
    device["userName"] = f"enterprises/{enterprise}/users/{number}"
    device["ownership"] = ownership
    device["hardwareInfo"]["serialNumber"] = f"R58M{number:07d}"
    return device


def amapi_policy(enterprise: str = "LC01x7yq", policy: str = "government-phones", reports: bool = True) -> dict[str, Any]:
    data = copy.deepcopy(fixture("amapi-policy.json"))
    data["name"] = f"enterprises/{enterprise}/policies/{policy}"
    data["statusReportingSettings"]["applicationReportsEnabled"] = reports
    return data


class GraphApp:
    """Microsoft Graph's managedDevices, detectedApps and AppInvRawData export jobs, and the
    identity platform's token endpoint (`/{tenant}/oauth2/v2.0/token`)."""

    def __init__(self, tenant: str, devices: list[dict[str, Any]], apps: dict[str, list[dict[str, Any]]],
                 secret: str = "", public_key: rsa.RSAPublicKey | None = None, tokens: Tokens | None = None,
                 export_csv: bytes = b"", polls_before_done: int = 1) -> None:
        self.tenant, self.devices, self.apps = tenant, devices, apps
        self.secret, self.public_key = secret, public_key
        self.tokens = tokens or Tokens()
        self.export_csv, self.polls_left = export_csv, polls_before_done
        self.base = ""

    def __call__(self, seen: Seen) -> Reply:
        if seen.path == f"/{self.tenant}/oauth2/v2.0/token":
            return self._token(seen)
        if seen.path == "/download/AppInvRawData.zip":
            assert "authorization" not in seen.headers, "bearer token sent to the storage URL"
            archive = io.BytesIO()
            with zipfile.ZipFile(archive, "w") as zipped:
                zipped.writestr("AppInvRawData.csv", self.export_csv)
            return 200, {"Content-Type": "application/zip"}, archive.getvalue()
        refused = self.tokens.refusal(seen)
        if refused:
            return refused
        path = unquote(seen.path)
        if path == "/v1.0/deviceManagement/managedDevices":
            return self._managed(seen)
        prefix, suffix = "/v1.0/deviceManagement/managedDevices/", "/detectedApps"
        if path.startswith(prefix) and path.endswith(suffix):
            device = path[len(prefix):-len(suffix)]
            if device not in self.apps:
                return reply(404, {"error": {"code": "ResourceNotFound", "message": "no such device"}})
            return self._detected(seen, device)
        if path == "/beta/deviceManagement/reports/exportJobs" and seen.method == "POST":
            assert seen.json() == {"reportName": "AppInvRawData", "format": "csv"}, seen.json()
            return reply(201, {"id": "AppInvRawData_0f1e2d3c", "reportName": "AppInvRawData", "status": "notStarted"})
        if path == "/beta/deviceManagement/reports/exportJobs('AppInvRawData_0f1e2d3c')":
            self.polls_left -= 1
            done = self.polls_left < 0
            return reply(200, {"id": "AppInvRawData_0f1e2d3c", "status": "completed" if done else "inProgress",
                               "url": f"{self.base}/download/AppInvRawData.zip" if done else None})
        return reply(404, {"error": {"code": "ResourceNotFound", "message": path}})

    def _token(self, seen: Seen) -> Reply:
        form = seen.form()
        assert form["grant_type"] == "client_credentials" and form["scope"] == f"{self.base}/.default", form
        if self.tokens.revoked:
            return reply(401, {"error": "invalid_client", "error_description": "AADSTS7000222: client secret expired"})
        if "client_assertion" in form:
            header, claims = jwt_parts(form["client_assertion"], self.public_key)
            assert header["x5t"] and claims["iss"] == claims["sub"] == form["client_id"], (header, claims)
        elif form.get("client_secret") != self.secret:
            return reply(401, {"error": "invalid_client", "error_description": "AADSTS7000215: invalid client secret"})
        return reply(200, self.tokens.issue())

    def _page(self, items: list[Any], seen: Seen, link: str) -> Reply:
        size, start = int(seen.param("$top") or 2), int(seen.param("$skiptoken") or 0)
        body: dict[str, Any] = {"value": items[start:start + size]}
        if start + size < len(items):
            body["@odata.nextLink"] = f"{self.base}{link}?$top={size}&$skiptoken={start + size}"
        return reply(200, body)

    def _managed(self, seen: Seen) -> Reply:
        return self._page(self.devices, seen, "/v1.0/deviceManagement/managedDevices")

    def _detected(self, seen: Seen, device: str) -> Reply:
        return self._page(self.apps[device], seen, seen.path)


class JamfApp:
    """Jamf Pro's `POST /api/oauth/token` and `GET /api/v2/mobile-devices/detail`."""

    def __init__(self, devices: list[dict[str, Any]], client_id: str, secret: str, tokens: Tokens | None = None) -> None:
        self.devices, self.client_id, self.secret = devices, client_id, secret
        self.tokens = tokens or Tokens()

    def __call__(self, seen: Seen) -> Reply:
        if seen.path == "/api/oauth/token":
            form = seen.form()
            if (form.get("client_id"), form.get("client_secret"), form.get("grant_type")) != (
                    self.client_id, self.secret, "client_credentials") or self.tokens.revoked:
                return reply(401, {"error": "invalid_client"})
            return reply(200, self.tokens.issue())
        refused = self.tokens.refusal(seen)
        if refused:
            return refused
        if seen.path == "/api/v2/mobile-devices/detail":
            page, size = int(seen.param("page") or 0), int(seen.param("page-size") or 100)
            return reply(200, {"totalCount": len(self.devices), "results": self.devices[page * size:(page + 1) * size]})
        return reply(404, {"httpStatus": 404, "errors": [{"code": "INVALID_ID", "description": seen.path}]})


def jamf_device(number: int, ownership: str = "Institutional") -> dict[str, Any]:
    device = fixture("jamf-mobile-device-detail.json")
    device["mobileDeviceId"] = str(number)
    device["general"]["displayName"] = f"QC-ASSNAT iPad {number}"
    device["general"]["deviceOwnershipType"] = ownership
    return device


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def service_account_key(folder: Path, key: rsa.RSAPrivateKey, token_uri: str) -> Path:
    """Write a Google service-account JSON key (the fields of the file the Cloud console gives)."""
    path = folder / "service-account.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "appban-test", "private_key_id": "0123abcd",
        "private_key": private_pem(key), "client_email": "appban@appban-test.iam.gserviceaccount.com",
        "client_id": "1000000000001", "token_uri": token_uri,
    }))
    path.chmod(0o600)
    return path


def certificate_pem(folder: Path, key: rsa.RSAPrivateKey) -> Path:
    """Write a self-signed certificate and its key in one PEM file, as an Entra app registration's
    certificate credential is kept."""
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "appban intune reader")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2)).sign(key, hashes.SHA256()))
    path = folder / "intune-cert.pem"
    path.write_text(private_pem(key) + cert.public_bytes(serialization.Encoding.PEM).decode())
    path.chmod(0o600)
    return path
