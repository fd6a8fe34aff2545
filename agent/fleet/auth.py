"""Who may do what on the fleet server: the admin token (reads, web pages), the metrics token,
the enroll secret, per-device tokens, and the web session cookie.

All comparisons are constant-time. The session cookie is stateless — an expiry and an HMAC of it
keyed by the admin token — so every server behind a load balancer accepts it, and rotating the
admin token logs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SESSION_COOKIE = "appban_fleet_session"
SESSION_SECONDS = 8 * 3600


def bearer(header: str | None) -> str:
    """Return the token of an `Authorization: Bearer …` header, or ""."""
    scheme, _, token = (header or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def same(given: str, expected: str) -> bool:
    """Constant-time equality; an empty expected secret never matches."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def _signature(admin_token: str, expires: int) -> str:
    return hmac.new(admin_token.encode(), f"session:{expires}".encode(), hashlib.sha256).hexdigest()


def make_session(admin_token: str, now: float | None = None) -> str:
    """Return a session cookie value valid for SESSION_SECONDS."""
    expires = int((time.time() if now is None else now) + SESSION_SECONDS)
    return f"{expires}.{_signature(admin_token, expires)}"


def valid_session(value: str, admin_token: str, now: float | None = None) -> bool:
    """Whether a session cookie value was made with this admin token and has not expired."""
    stamp, _, signature = value.partition(".")
    if not stamp.isdigit() or not admin_token:
        return False
    fresh = int(stamp) > (time.time() if now is None else now)
    return fresh and hmac.compare_digest(signature.encode(), _signature(admin_token, int(stamp)).encode())


def admin_allowed(admin_token: str, authorization: str | None, cookie: str | None) -> bool:
    """The admin token as a bearer header, or a valid web session cookie."""
    return same(bearer(authorization), admin_token) or valid_session(cookie or "", admin_token)
