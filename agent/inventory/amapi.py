"""Android phones managed with the Google Android Management API (AMAPI), read from its REST API.

`enterprises.devices.list` (pageSize / pageToken) gives every device with its identity, policy,
ownership and `applicationReports[]`; the policies the devices name are read once each
(`enterprises.policies.get`), because a device only reports its apps when its policy sets
`statusReportingSettings.applicationReportsEnabled` — a device without that is an error naming it
("no app reports"), never a compliant phone.

Auth is a service-account JSON key: a JWT signed with its private key is exchanged at the key's
`token_uri` for a bearer token (RFC 7523, Google's "OAuth 2.0 for server to server
applications"). Why not `google-auth`: it pulls in rsa, pyasn1-modules and cachetools and its own
HTTP transport, for what is one signed JWT with `cryptography` (already a core dependency) and
one POST through the shared client, which then gets the same retries and tests as every call.
"""

from __future__ import annotations

import json
import operator
import re
import sys
import time
from typing import TYPE_CHECKING, Any, Iterator

from agent.config import AmapiConfig, checked_endpoint
from agent.inventory.api import (
    ApiClient, ApiError, CredentialError, Token, failed, read_secret,
    resource_path, segment, signed_jwt, token_request,
)
from agent.inventory.base import Collected
from agent.inventory.gateway import pairs
from agent.model import App, CollectorError, Device

if TYPE_CHECKING:
    from agent.model import Ownership  # a type alias for type checkers only


NAME = "amapi"
SCOPE = "https://www.googleapis.com/auth/androidmanagement"
TOKEN_LIFETIME = 3600
_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
OWNERSHIP: dict[str, Ownership] = {"COMPANY_OWNED": "corporate", "PERSONALLY_OWNED": "personal"}
"""Device.ownership (reference/rest/v1/enterprises.devices#Ownership)."""
MANAGEMENT_MODE: dict[str, Ownership] = {"DEVICE_OWNER": "corporate", "PROFILE_OWNER": "personal"}
"""Device.managementMode, used when ownership is unspecified: a fully managed device is the
organisation's, a work profile is (unless `ownership` says otherwise) on a personal phone."""
WORK_PROFILE_NOTE = (
    "amapi: on work-profile (PROFILE_OWNER) devices the Android Management API reports the work "
    "profile's apps only; the personal profile is neither read nor reported"
)


def policy_name(enterprise: str, name: str) -> str:
    """Return a device's policy as a full resource name (devices may name it by its short id)."""
    return name if name.startswith("enterprises/") else f"enterprises/{enterprise}/policies/{name}"


def ownership(device: dict[str, Any]) -> Ownership:
    """Given an AMAPI device, return corporate, personal or unknown."""
    return OWNERSHIP.get(str(device.get("ownership", "")), MANAGEMENT_MODE.get(str(device.get("managementMode", "")), "unknown"))


def reports_enabled(policy: dict[str, Any]) -> bool:
    """Whether a policy makes its devices send application reports."""
    settings = policy.get("statusReportingSettings")
    return isinstance(settings, dict) and settings.get("applicationReportsEnabled") is True


def to_device(data: dict[str, Any], enterprise: str) -> Device:
    """Given one `devices[]` item, return its Device (id = the device's resource name)."""
    hardware = data.get("hardwareInfo") if isinstance(data.get("hardwareInfo"), dict) else {}
    software = data.get("softwareInfo") if isinstance(data.get("softwareInfo"), dict) else {}
    attributes = {
        "mdm": NAME, "serial": str(hardware.get("serialNumber", "")), "model": str(hardware.get("model", "")),
        "manufacturer": str(hardware.get("manufacturer", "") or hardware.get("brand", "")),
        "policy": policy_name(enterprise, str(data.get("policyName", ""))) if data.get("policyName") else "",
        "applied_policy": str(data.get("appliedPolicyName", "")), "user_name": str(data.get("userName", "")),
        "enrollment_time": str(data.get("enrollmentTime", "")), "management_mode": str(data.get("managementMode", "")),
        "mdm_ownership": str(data.get("ownership", "")), "state": str(data.get("state", "")),
        "enrollment_token_data": str(data.get("enrollmentTokenData", "")),
    }
    version = software.get("androidVersion")
    return Device(
        id=str(data["name"]), kind="android",
        os=f"Android {version}" if version else "", attributes=pairs(attributes), ownership=ownership(data),
    )


_REPORT_FIELDS = ("packageName", "displayName", "versionName", "versionCode", "packageSha256Hash",
                  "installerPackageName", "applicationSource", "state")
_REPORT_KEY = operator.itemgetter(*_REPORT_FIELDS)


class _Apps:
    """Builds App records, sharing one prototype per distinct report across devices (a fleet has
    the same few hundred apps on thousands of phones)."""

    def __init__(self) -> None:
        self.protos: dict[tuple[Any, ...], App] = {}

    def app(self, report: dict[str, Any], device: str) -> App | None:
        try:  # the fast path: a report with every field (a fleet's million reports go through here)
            key = _REPORT_KEY(report)
        except KeyError:
            key = tuple(report.get(name) for name in _REPORT_FIELDS)
        certs = report.get("signingKeyCertFingerprints")
        if type(certs) is list:
            key += tuple(certs)
        package, state = key[0], key[7]
        if not isinstance(package, str) or not package or state == "REMOVED":
            return None
        try:
            proto = self.protos.get(key)
        except TypeError:  # a list or object where the API documents a scalar: not a usable report
            return None
        if proto is None:
            digest = str(report.get("packageSha256Hash") or "")
            extra = {
                "version_code": str(report.get("versionCode", "")), "state": str(report.get("state", "")),
                "installer": str(report.get("installerPackageName", "")),
                "application_source": str(report.get("applicationSource", "")),
                "signing_certs": ",".join(map(str, key[len(_REPORT_FIELDS):])),
            }
            intern = sys.intern
            proto = self.protos[key] = App(
                source=NAME, id=intern(package), name=intern(str(report.get("displayName") or package)),
                version=intern(str(report.get("versionName", ""))), device="",
                sha256=digest.lower() if _HEX64.fullmatch(digest) else "", extra=pairs(extra),
            )
        return proto.on_device(device)


class AmapiConnector:
    """One enterprise's devices and app reports; `policies` holds every policy read (for blocking)."""

    def __init__(self, config: AmapiConfig, client: ApiClient | None = None) -> None:
        self.config = config
        self.client = client or ApiClient(NAME, config.base_url, self._new_token, config.timeout, config.ca_bundle)
        self.policies: dict[str, dict[str, Any] | ApiError] = {}
        self._apps = _Apps()

    def _new_token(self, client: ApiClient) -> Token:
        """Sign a JWT with the service account's key and exchange it at the key's token_uri."""
        what = f"amapi credentials_file {self.config.credentials_file}"
        try:
            key = json.loads(read_secret(self.config.credentials_file, "amapi credentials_file"))
            email, private_key, token_uri = key["client_email"], key["private_key"], checked_endpoint(key["token_uri"])
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"lacks {exc}" if isinstance(exc, KeyError) else str(exc).split("\n")[0]
            raise CredentialError(f"{what}: not a usable service-account key ({reason})") from None
        now = int(time.time())
        claims = {"iss": email, "scope": SCOPE, "aud": token_uri, "iat": now, "exp": now + TOKEN_LIFETIME}
        try:
            assertion = signed_jwt(claims, str(private_key).encode(), {"kid": str(key.get("private_key_id", ""))})
        except ValueError as exc:
            raise CredentialError(f"{what}: private_key unusable ({str(exc).splitlines()[0]})") from None
        return token_request(client, token_uri, {"grant_type": _GRANT, "assertion": assertion}, "amapi token request")

    def devices_url(self) -> str:
        return self.client.url(f"v1/enterprises/{segment(self.config.enterprise)}/devices")

    def policy(self, name: str) -> dict[str, Any]:
        """Return a policy (read once). Raise ApiError if it cannot be read."""
        cached = self.policies.get(name)
        if cached is None:
            try:
                cached = self.client.get_json(self.client.url(f"v1/{resource_path(name)}"))
            except CredentialError:
                raise
            except ApiError as exc:
                cached = exc
            self.policies[name] = cached
        if isinstance(cached, ApiError):
            raise cached
        return cached

    def pages(self) -> Iterator[Collected]:
        """Yield each page of `enterprises.devices.list`; a failed page (or revoked credential)
        ends the listing with one error, and the pages before it stay."""
        page_token = ""
        while True:
            params = {"pageSize": self.config.page_size, **({"pageToken": page_token} if page_token else {})}
            try:
                data = self.client.get_json(self.devices_url(), params)
                page = self._page(data.get("devices") or [])
            except ApiError as exc:
                yield failed(NAME, exc)
                return
            yield page
            page_token = str(data.get("nextPageToken") or "")
            if not page_token:
                return

    def _page(self, devices: list[Any]) -> Collected:
        page = Collected()
        for data in devices:
            if not isinstance(data, dict) or not isinstance(data.get("name"), str):
                page.errors.append(CollectorError(NAME, "a device without a name was skipped"))
                continue
            device = to_device(data, self.config.enterprise)
            page.devices.append(device)
            problem = self._no_reports(data, dict(device.attributes).get("policy", ""))
            if problem:
                page.errors.append(CollectorError(NAME, problem, device.id))
                continue
            for report in data["applicationReports"]:
                app = self._apps.app(report, device.id) if isinstance(report, dict) else None
                if app is not None:
                    page.apps.append(app)
            if data.get("managementMode") == "PROFILE_OWNER":
                page.notes.append(WORK_PROFILE_NOTE)
        return page

    def _no_reports(self, data: dict[str, Any], policy: str) -> str:
        """Return why this device's apps are unknown ("" when its reports can be used).

        Raise CredentialError (the connector stops); a policy that cannot be read is this device's error."""
        if not policy:
            return "no app reports: the device names no policy"
        try:
            enabled = reports_enabled(self.policy(policy))
        except CredentialError:
            raise
        except ApiError as exc:
            return f"no app reports: cannot read its policy ({exc})"
        if not enabled:
            return f"no app reports: policy {policy} does not enable statusReportingSettings.applicationReportsEnabled"
        if not isinstance(data.get("applicationReports"), list) or not data["applicationReports"]:
            return "no app reports yet: the device has sent no status report with its apps"
        return ""

