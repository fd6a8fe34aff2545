"""Devices managed with Microsoft Intune, read from Microsoft Graph.

`GET /v1.0/deviceManagement/managedDevices` ($select, $top, paging by `@odata.nextLink`) gives
every device with its owner type (`managedDeviceOwnerType`: company / personal); its apps come
either from `…/managedDevices/{id}/detectedApps` per device (`displayName`, `version`,
`publisher`, `platform` — Intune's discovered apps carry no package or bundle id, so ban-list
`names:` globs are what matches them), or, with `bulk: true`, from one export job
(`POST /beta/deviceManagement/reports/exportJobs`, report `AppInvRawData`) polled until
`completed`, whose ZIP is read by the same parser as a hand-exported file (agent/inventory/mdm.py).

Auth is OAuth 2.0 client credentials at `{login_url}/{tenant}/oauth2/v2.0/token`, scope
`{base_url}/.default`, with a client secret or a certificate (a JWT client assertion signed with
its key, `x5t` = the certificate's SHA-1 thumbprint), each read from a file. Why not MSAL: it is
one form POST (MSAL adds PyJWT and its own HTTP layer), and the shared client gives it the same
retries as every other call.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterator

from agent.config import IntuneConfig, checked_endpoint
from agent.inventory.api import (
    ApiClient, ApiError, CredentialError, Token, b64url, failed, read_secret, segment,
    signed_jwt, token_request,
)
from agent.inventory.base import Collected
from agent.inventory.gateway import pairs
from agent.inventory.mdm import INTUNE_NOTE, ExportError, load_zip, platform_source
from agent.log import log_event
from agent.model import App, CollectorError, Device

if TYPE_CHECKING:
    from agent.model import Ownership  # a type alias for type checkers only

logger = logging.getLogger(__name__)

NAME = "intune"
SELECT = (
    "id,deviceName,operatingSystem,osVersion,managedDeviceOwnerType,userPrincipalName,emailAddress,"
    "userDisplayName,serialNumber,model,manufacturer,enrolledDateTime,lastSyncDateTime,deviceCategoryDisplayName"
)
OWNERSHIP: dict[str, Ownership] = {"company": "corporate", "personal": "personal"}
MAX_EXPORT_BYTES = 4 * 1024 ** 3
"""An AppInvRawData ZIP larger than this is refused rather than filling the disk."""
_CHUNK = 1 << 20


def to_device(data: dict[str, Any]) -> Device:
    """Given one managedDevice, return its Device (id = Intune's device id)."""
    email = str(data.get("emailAddress") or "")
    attributes = {
        "mdm": NAME, "serial": str(data.get("serialNumber") or ""), "model": str(data.get("model") or ""),
        "manufacturer": str(data.get("manufacturer") or ""), "owner": str(data.get("userPrincipalName") or ""),
        "user": str(data.get("userDisplayName") or ""), "email": email,
        "email_domain": email.rpartition("@")[2].casefold() if "@" in email else "",
        "category": str(data.get("deviceCategoryDisplayName") or ""),
        "enrolled": str(data.get("enrolledDateTime") or ""), "last_sync": str(data.get("lastSyncDateTime") or ""),
        "owner_type": str(data.get("managedDeviceOwnerType") or ""), "platform": str(data.get("operatingSystem") or ""),
    }
    system = str(data.get("operatingSystem") or "")
    return Device(
        id=str(data["id"]), hostname=str(data.get("deviceName") or ""), kind=platform_source(system),
        os=f"{system} {data.get('osVersion') or ''}".strip(), attributes=pairs(attributes),
        ownership=OWNERSHIP.get(str(data.get("managedDeviceOwnerType") or ""), "unknown"),
    )


def to_app(data: dict[str, Any], device: Device) -> App | None:
    """Given one detectedApp on a device, return its App (None without a display name)."""
    name = str(data.get("displayName") or "").strip()
    if not name:
        return None
    extra = {"detected_app_id": str(data.get("id") or ""), "platform": str(data.get("platform") or "")}
    return App(source=NAME, id=name, name=name, version=str(data.get("version") or ""),
               publisher=str(data.get("publisher") or ""), device=device.id, extra=pairs(extra))


class IntuneConnector:
    """One tenant's managed devices and their discovered apps."""

    def __init__(self, config: IntuneConfig, client: ApiClient | None = None) -> None:
        self.config = config
        self.client = client or ApiClient(NAME, config.base_url, self._new_token, config.timeout, config.ca_bundle)

    def token_url(self) -> str:
        return f"{self.config.login_url}/{segment(self.config.tenant)}/oauth2/v2.0/token"

    def _new_token(self, client: ApiClient) -> Token:
        form = {"client_id": self.config.client_id, "scope": f"{self.config.base_url}/.default",
                "grant_type": "client_credentials"}
        if self.config.secret_file:
            form["client_secret"] = read_secret(self.config.secret_file, "intune secret_file").decode("utf-8", "replace").strip()
        else:
            form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            form["client_assertion"] = self._assertion()
        return token_request(client, self.token_url(), form, "intune token request")

    def _assertion(self) -> str:
        """The JWT proving possession of the app's certificate (Microsoft identity platform
        "certificate credentials"): signed with its key, naming it by SHA-1 thumbprint."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        pem = read_secret(self.config.certificate_file, "intune certificate_file")
        try:
            thumbprint = hashlib.sha1(x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)).digest()
            now = int(time.time())
            claims = {"aud": self.token_url(), "iss": self.config.client_id, "sub": self.config.client_id,
                      "jti": str(uuid.uuid4()), "nbf": now, "exp": now + 600}
            return signed_jwt(claims, pem, {"x5t": b64url(thumbprint)})
        except ValueError as exc:
            raise CredentialError(f"intune certificate_file {self.config.certificate_file}: "
                                  f"needs a PEM certificate and RSA key ({str(exc).splitlines()[0]})") from None

    def _listing(self, url: str, params: dict[str, Any] | None) -> Iterator[list[Any]]:
        """Yield each page's `value` list, following `@odata.nextLink` (only on the API's own host)."""
        while url:
            data = self.client.get_json(url, params)
            yield data.get("value") or []
            url, params = str(data.get("@odata.nextLink") or ""), None
            if url and not self.client.same_origin(url):
                raise ApiError(f"{NAME}: @odata.nextLink points away from {self.config.base_url}; refused")

    def pages(self) -> Iterator[Collected]:
        """Yield each page of managed devices with their apps (or, bulk, the export's apps at the end)."""
        url = self.client.url("v1.0/deviceManagement/managedDevices")
        devices: dict[str, Device] = {}
        try:
            for values in self._listing(url, {"$select": SELECT, "$top": self.config.page_size}):
                page = Collected(devices=[to_device(v) for v in values if isinstance(v, dict) and v.get("id")])
                devices.update((d.id, d) for d in page.devices)
                if not self.config.bulk:
                    for device in page.devices:
                        self._detected_apps(device, page)
                    page.notes.append(INTUNE_NOTE)
                yield page
            if self.config.bulk:
                yield self._export(devices)
        except ApiError as exc:
            yield failed(NAME, exc)

    def _detected_apps(self, device: Device, page: Collected) -> None:
        """Add one device's detected apps to the page; a failure is that device's error, except a
        refused credential, which stops the connector."""
        url = self.client.url(f"v1.0/deviceManagement/managedDevices/{segment(device.id)}/detectedApps")
        try:
            for values in self._listing(url, None):
                page.apps += [a for a in (to_app(v, device) for v in values if isinstance(v, dict)) if a]
        except CredentialError:
            raise
        except ApiError as exc:
            page.errors.append(CollectorError(NAME, str(exc), device.id))

    def _export(self, devices: dict[str, Device]) -> Collected:
        """Run an AppInvRawData export job, wait for it, and read its ZIP; the managed-devices
        listing supplies what the export lacks (owner type, category)."""
        jobs = self.client.url("beta/deviceManagement/reports/exportJobs")
        job = self.client.send_json("POST", jobs, {"reportName": "AppInvRawData", "format": "csv"})
        job_url = self.client.url(f"beta/deviceManagement/reports/exportJobs('{segment(str(job.get('id', '')))}')")
        deadline = time.monotonic() + self.config.export_timeout
        while job.get("status") != "completed":
            if job.get("status") == "failed":
                raise ApiError(f"{NAME}: export job {job.get('id')} failed")
            if time.monotonic() > deadline:
                raise ApiError(f"{NAME}: export job {job.get('id')} not completed after {self.config.export_timeout:.0f} s")
            time.sleep(self.config.poll_interval)
            job = self.client.get_json(job_url)
        log_event(logger, logging.INFO, "intune.export_completed", job=str(job.get("id")))
        inventory = self._download(str(job.get("url") or ""))
        merged = Collected(errors=list(inventory.errors), notes=list(inventory.notes))
        merged.devices = [replace(d, attributes=pairs({**dict(d.attributes), "mdm": NAME}))
                          for d in inventory.devices if d.id not in devices]  # in the export, not listed
        merged.apps = [replace(a, source=NAME) for a in inventory.apps]  # matched by names, as detectedApps are
        return merged

    def _download(self, url: str) -> Any:
        """Stream the export's ZIP (a pre-signed storage URL: no bearer token is sent there) to a
        temporary file and parse it."""
        try:
            checked_endpoint(url)
        except ValueError:
            raise ApiError(f"{NAME}: the export job gave no usable download url") from None
        with tempfile.TemporaryDirectory(prefix="appban-intune-") as folder:
            path = os.path.join(folder, "AppInvRawData.zip")
            response = self.client.request("GET", url, auth=False, stream=True)
            size = 0
            with open(path, "wb") as out:
                for chunk in response.iter_content(_CHUNK):
                    size += len(chunk)
                    if size > MAX_EXPORT_BYTES:
                        raise ApiError(f"{NAME}: the export is larger than {MAX_EXPORT_BYTES >> 30} GiB; refused")
                    out.write(chunk)
            try:
                return load_zip(path, "intune AppInvRawData export")
            except ExportError as exc:
                raise ApiError(str(exc)) from None

