"""The fleet's tables, as SQLAlchemy Core metadata: one schema for SQLite and PostgreSQL.

Times are seconds since the epoch (a float): the same type and arithmetic on both engines, and
staleness is one comparison. JSON documents are stored as text, written and read by us only.
The Alembic history in `migrations/` creates exactly these tables; a test compares the two.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from sqlalchemy import (Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table,
                        Text, UniqueConstraint)

metadata = MetaData()

ID = 255
"""Longest device id, entry id or key accepted (longer input is refused at ingest)."""


def json_text(value: Any) -> str:
    """Given a JSON value, return its compact text as stored (and hashed) by ingest.

    Written by orjson, about ten times the standard library's speed: a changed report stores a
    100-app inventory. What orjson refuses (a lone surrogate, an integer beyond 64 bits, both only
    in documents the standard library's decoder let through) is written by the standard library."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

devices = Table(
    "devices", metadata,
    Column("id", String(ID), primary_key=True),
    Column("hostname", String(ID), nullable=False, default=""),
    Column("kind", String(32), nullable=False, default="host"),
    Column("os", String(ID), nullable=False, default=""),
    Column("groups", Text, nullable=False, default="[]"),
    # The central groups (JSON list); `device_groups` holds them one per row for queries.
    Column("agent_groups", Text, nullable=False, default="[]"),
    Column("attributes", Text, nullable=False, default="{}"),
    Column("source", String(32), nullable=False),
    Column("agent_version", String(64), nullable=False, default=""),
    Column("banlist_serial", Integer, nullable=True),
    Column("banlist_signer", String(ID), nullable=False, default=""),
    Column("compliant", Boolean, nullable=False, default=True),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("last_report_id", String(ID), nullable=False, default=""),
    Column("reports", Integer, nullable=False, default=0),
    Column("state_hash", String(64), nullable=False, default=""),
    Index("ix_devices_last_seen", "last_seen"),
    Index("ix_devices_kind", "kind"),
    Index("ix_devices_compliant", "compliant"),
    Index("ix_devices_banlist_serial", "banlist_serial"),
)

device_groups = Table(
    "device_groups", metadata,
    Column("device_id", String(ID), ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("group_name", String(ID), primary_key=True),
    Index("ix_device_groups_group", "group_name"),
)

inventories = Table(
    "inventories", metadata,
    Column("device_id", String(ID), ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("updated", Float, nullable=False),
    Column("apps", Integer, nullable=False),
    Column("body", Text, nullable=False),
    # The device's latest appban.inventory/v1 document, for re-matching when the policy changes.
)

findings = Table(
    "findings", metadata,
    Column("device_id", String(ID), ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("entry", String(ID), primary_key=True),
    Column("app_key", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("matched_by", Text, nullable=False, default=""),
    Column("app", Text, nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("resolved_at", Float, nullable=True),
    # Set when the app is gone; the row stays (until retention) so `findings` can show it.
    Index("ix_findings_entry_status", "entry", "status"),
    Index("ix_findings_resolved", "resolved_at"),
)

finding_events = Table(
    "finding_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(ID), nullable=False),
    Column("entry", String(ID), nullable=False),
    Column("app_key", String(32), nullable=False),
    Column("event", String(16), nullable=False),
    # appeared, resolved, exempted, advisory, upcoming, violation (became), drift.
    Column("status", String(16), nullable=False),
    Column("app_name", Text, nullable=False, default=""),
    Column("at", Float, nullable=False),
    Column("report_id", String(ID), nullable=False, default=""),
    Index("ix_events_device", "device_id", "at"),
    Index("ix_events_entry", "entry", "at"),
)

reports = Table(
    "reports", metadata,
    Column("id", String(ID), primary_key=True),
    Column("device_id", String(ID), nullable=False),
    Column("received", Float, nullable=False),
    Column("body", Text, nullable=False),
    # The raw document as received (reports that changed something; see Store.ingest).
    Index("ix_reports_received", "received"),
)

enrollments = Table(
    "enrollments", metadata,
    Column("device_id", String(ID), primary_key=True),
    Column("token_hash", String(64), nullable=False),
    Column("enrolled", Float, nullable=False),
    UniqueConstraint("token_hash", name="uq_enrollments_token_hash"),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("key", String(ID), primary_key=True),
    Column("device_id", String(ID), nullable=False),
    Column("received", Float, nullable=False),
    Column("response", Text, nullable=False),
    Index("ix_idempotency_received", "received"),
)

pull_targets = Table(
    "pull_targets", metadata,
    Column("url", String(1024), primary_key=True),
    Column("token_file", Text, nullable=False, default=""),
    Column("due", Float, nullable=False, default=0.0),
    Column("lease_owner", String(64), nullable=False, default=""),
    Column("lease_until", Float, nullable=False, default=0.0),
    Column("failures", Integer, nullable=False, default=0),
    Column("last_ok", Float, nullable=True),
    Column("last_error", Text, nullable=False, default=""),
    Column("device_id", String(ID), nullable=False, default=""),
)

settings = Table(
    "settings", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    # Fleet-wide facts shared by every server on the database (the policy fingerprint in force).
)
