"""Who holds a device id: enrollment, token rotation, revocation and the administrator's leave to
enroll a known id again, each recorded in `enrollment_events`.

The enroll secret is shared by every agent, so it may only ever create a device the fleet has not
seen. A known id (enrolled, or stored from a pull, an import or an MDM) gets a new token only when
the caller proves the current one (rotation, osquery-style re-keying by the node itself) or when an
administrator allowed one more enrollment (`appban fleet reenroll ID`, a reinstalled machine).
Otherwise anyone holding the secret could take over a device id and report lies for it.

The agent may propose the new token itself (`token` in the enroll body): it writes the proposal to
its state directory *before* asking, so whether or not the answer reaches it, it holds the token
the fleet now expects (issue 12: an answer lost mid-rotation must not leave an agent whose only
token is dead, with a re-enrollment the fleet refuses). A proposal must look like what the fleet
would make itself (PROPOSAL: 32 or more URL-safe characters); only its hash is stored, as always.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from agent.fleet import tables as t
from agent.fleet.store import Store, token_hash

REENROLL_WINDOW = 86400.0
"""How long an administrator's leave to enroll a known id again stays usable (`--within`)."""
PROPOSAL = re.compile(r"[A-Za-z0-9_-]{32,256}")
"""A token an agent may propose: as long as and of the alphabet of secrets.token_urlsafe(32)'s."""
EVENTS = ("enrolled", "rotated", "reenrolled", "reenroll_allowed", "revoked")


class EnrollRefused(ValueError):
    """An enrollment or an administrator's action that is refused: `status` is the HTTP answer,
    the message one line naming the device and what would make it work."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Enrolled:
    """A granted enrollment: the new token (returned once, stored only as a hash) and how."""

    token: str
    event: str


def refusal_hint(device: str) -> str:
    """What the administrator runs so a device that lost its token may enroll again."""
    return f"the fleet administrator must allow it: appban fleet reenroll {device}"


def _record(connection: Connection, device: str, event: str, now: float, actor: str) -> None:
    connection.execute(insert(t.enrollment_events).values(device_id=device, event=event, at=now, actor=actor[:t.ID]))


def _known(connection: Connection, device: str) -> bool:
    """Whether the fleet already has a device with this id, from any source."""
    return connection.scalar(select(t.devices.c.id).where(t.devices.c.id == device)) is not None


def enroll(store: Store, device: str, now: float, actor: str, current_token: str = "", proposed: str = "") -> Enrolled:
    """Given a device id (the caller holds the enroll secret) and, for a rotation, the device's
    current token, return a new token for it — the one it `proposed` (checked by the caller
    against PROPOSAL), else a fresh one: a first enrollment, a rotation, or the re-enrollment an
    administrator allowed. The replaced token stops working in the same transaction.

    Raise EnrollRefused (409) for a known id without either proof or a proposal some device
    already holds, (401) for a token that is not the id's current one.
    """
    try:
        return _enroll(store, device, now, actor, current_token, proposed or secrets.token_urlsafe(32))
    except IntegrityError:  # the unique token hash: a proposal that is already some device's token
        raise EnrollRefused(409, f"device {device}: the proposed token is in use; propose another") from None


def _enroll(store: Store, device: str, now: float, actor: str, current_token: str, token: str) -> Enrolled:
    with store.write() as connection:
        row = connection.execute(select(t.enrollments.c.token_hash, t.enrollments.c.revoked_at)
                                 .where(t.enrollments.c.device_id == device)).first()
        grant = connection.scalar(select(t.reenroll_grants.c.until).where(t.reenroll_grants.c.device_id == device))
        if current_token:
            if row is None or row.revoked_at is not None or row.token_hash != token_hash(current_token):
                raise EnrollRefused(401, f"device {device}: the token presented is not its current token")
            event = "rotated"
        elif grant is not None and grant > now:
            event = "reenrolled"
        elif row is not None or _known(connection, device):
            raise EnrollRefused(409, f"device {device} is already known to the fleet; to enroll it again "
                                     f"{refusal_hint(device)}")
        else:
            event = "enrolled"
        connection.execute(delete(t.reenroll_grants).where(t.reenroll_grants.c.device_id == device))
        connection.execute(delete(t.enrollments).where(t.enrollments.c.device_id == device))
        connection.execute(insert(t.enrollments).values(device_id=device, token_hash=token_hash(token), enrolled=now,
                                                        revoked_at=None))
        # From now on it reports for itself (a phone a gateway used to report, say).
        connection.execute(update(t.devices).where(t.devices.c.id == device).values(reported_by=""))
        _record(connection, device, event, now, actor)
    return Enrolled(token, event)


def allow_reenroll(store: Store, device: str, now: float, actor: str, within: float = REENROLL_WINDOW) -> float:
    """Let a known device id enroll once more with the enroll secret within `within` seconds
    (its current token keeps working until that enrollment replaces it); return the deadline.
    Raise EnrollRefused (404) for an id the fleet does not know (it needs no leave)."""
    until = now + within
    with store.write() as connection:
        enrolled = connection.scalar(select(t.enrollments.c.device_id).where(t.enrollments.c.device_id == device))
        if enrolled is None and not _known(connection, device):
            raise EnrollRefused(404, f"device {device} is not known to the fleet: it can enroll without leave")
        connection.execute(delete(t.reenroll_grants).where(t.reenroll_grants.c.device_id == device))
        connection.execute(insert(t.reenroll_grants).values(device_id=device, until=until, granted=now))
        _record(connection, device, "reenroll_allowed", now, actor)
    return until


def revoke(store: Store, device: str, now: float, actor: str) -> None:
    """Make a device's token stop working at once, on every server on the database (and take
    back any leave to re-enroll it: it enrolls again only after `reenroll`). Raise EnrollRefused
    (404) when the device has no enrollment."""
    with store.write() as connection:
        revoked = connection.execute(update(t.enrollments).where(t.enrollments.c.device_id == device)
                                     .values(revoked_at=now)).rowcount
        if not revoked:
            raise EnrollRefused(404, f"device {device} has no enrollment to revoke")
        connection.execute(delete(t.reenroll_grants).where(t.reenroll_grants.c.device_id == device))
        _record(connection, device, "revoked", now, actor)


def device_for_token(store: Store, token: str) -> str | None:
    """Return the device id a live (not revoked) token was issued to, or None."""
    with store.read() as connection:
        return connection.scalar(select(t.enrollments.c.device_id).where(
            t.enrollments.c.token_hash == token_hash(token), t.enrollments.c.revoked_at.is_(None)))


def enrolled_among(store: Store, devices: list[str]) -> list[str]:
    """Those of `devices` that hold an enrollment of their own (they report for themselves, so no
    gateway may report for them)."""
    with store.read() as connection:
        return sorted(connection.scalars(select(t.enrollments.c.device_id).where(t.enrollments.c.device_id.in_(devices))))


def events(connection: Connection, device: str) -> list[tuple[str, float, str]]:
    """The enrollment history of one device as (event, time, actor), in the order it happened."""
    e = t.enrollment_events
    rows = connection.execute(select(e.c.event, e.c.at, e.c.actor).where(e.c.device_id == device).order_by(e.c.id))
    return [(r.event, r.at, r.actor) for r in rows]
