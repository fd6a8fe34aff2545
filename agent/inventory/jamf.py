"""iPhones and iPads managed with Jamf Pro, read from the Jamf Pro API.

`POST /api/oauth/token` (API client credentials, Jamf Pro 10.49 or later) gives a bearer token;
`GET /api/v2/mobile-devices/detail?section=GENERAL&section=APPLICATIONS&section=USER_AND_LOCATION
&page=N&page-size=M` gives devices with their apps (`identifier` = bundle id, `name`, `version`,
`shortVersion`) page by page until `totalCount` is reached. Ownership comes from
`general.deviceOwnershipType`: `Institutional` is the organisation's; `PersonalDeviceProfile`,
`UserEnrollment` and `AccountDrivenUserEnrollment` are personal devices (on which, as with any
User Enrollment, the MDM sees only the managed apps).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Iterator

from agent.config import JamfConfig
from agent.inventory.api import ApiClient, ApiError, Token, failed, read_secret, token_request
from agent.inventory.base import Collected
from agent.inventory.gateway import pairs
from agent.model import App, Device

if TYPE_CHECKING:
    from agent.model import Ownership  # a type alias for type checkers only


NAME = "jamf"
SECTIONS = ("GENERAL", "APPLICATIONS", "USER_AND_LOCATION")
OWNERSHIP: dict[str, Ownership] = {
    "Institutional": "corporate", "PersonalDeviceProfile": "personal", "UserEnrollment": "personal",
    "AccountDrivenUserEnrollment": "personal",
}
PERSONAL_NOTE = ("jamf: on personally owned (User Enrollment) devices Jamf Pro sees managed apps only; "
                 "apps in the personal space are neither read nor reported")


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def to_device(data: dict[str, Any]) -> Device:
    """Given one `results[]` item, return its Device (id = Jamf's mobile device id)."""
    general, user = _section(data, "general"), _section(data, "userAndLocation")
    kind = str(data.get("deviceType") or "")
    email = str(user.get("emailAddress") or "")
    attributes = {
        "mdm": NAME, "udid": str(general.get("udid") or ""), "owner": str(user.get("username") or ""),
        "email": email, "email_domain": email.rpartition("@")[2].casefold() if "@" in email else "",
        "department": str(user.get("department") or ""), "building": str(user.get("building") or ""),
        "ownership_type": str(general.get("deviceOwnershipType") or ""), "asset_tag": str(general.get("assetTag") or ""),
        "managed": str(general.get("managed", "")).lower(), "supervised": str(general.get("supervised", "")).lower(),
    }
    return Device(
        id=str(data["mobileDeviceId"]), hostname=str(general.get("displayName") or ""),
        kind="ios" if kind.casefold() in ("ios", "ipados") else "mdm",
        os=f"{kind} {general.get('osVersion') or ''}".strip(), attributes=pairs(attributes),
        ownership=OWNERSHIP.get(str(general.get("deviceOwnershipType") or ""), "unknown"),
    )


def to_app(data: dict[str, Any], device: Device) -> App | None:
    """Given one `applications[]` item, return its App (None without a bundle id)."""
    identifier = str(data.get("identifier") or "")
    if not identifier:
        return None
    intern = sys.intern
    return App(
        source=NAME, id=intern(identifier),
        name=intern(str(data.get("name") or identifier)),
        version=intern(str(data.get("shortVersion") or data.get("version") or "")), device=device.id,
        extra=pairs({"bundle_version": str(data.get("version") or "")}),
    )


class JamfConnector:
    """One Jamf Pro server's mobile devices and their apps."""

    def __init__(self, config: JamfConfig, client: ApiClient | None = None) -> None:
        self.config = config
        self.client = client or ApiClient(NAME, config.url, self._new_token, config.timeout, config.ca_bundle)

    def _new_token(self, client: ApiClient) -> Token:
        secret = read_secret(self.config.secret_file, "jamf secret_file").decode("utf-8", "replace").strip()
        form = {"client_id": self.config.client_id, "client_secret": secret, "grant_type": "client_credentials"}
        return token_request(client, client.url("api/oauth/token"), form, "jamf token request")

    def pages(self) -> Iterator[Collected]:
        """Yield each page of mobile devices; a failed page ends the listing with one error."""
        url = self.client.url("api/v2/mobile-devices/detail")
        page_number, size = 0, self.config.page_size
        while True:
            params = [("section", s) for s in SECTIONS] + [("page", page_number), ("page-size", size)]
            try:
                data = self.client.get_json(url, params)
            except ApiError as exc:
                yield failed(NAME, exc)
                return
            results = [r for r in data.get("results") or [] if isinstance(r, dict) and r.get("mobileDeviceId") is not None]
            yield self._page(results)
            page_number += 1
            total = data.get("totalCount")
            if not results or not isinstance(total, int) or page_number * size >= total:
                return

    def _page(self, results: list[dict[str, Any]]) -> Collected:
        page = Collected()
        for data in results:
            device = to_device(data)
            page.devices.append(device)
            apps = data.get("applications") if isinstance(data.get("applications"), list) else []
            page.apps += [a for a in (to_app(x, device) for x in apps if isinstance(x, dict)) if a]
            if device.ownership == "personal":
                page.notes.append(PERSONAL_NOTE)
        return page

