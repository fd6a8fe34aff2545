"""The first fleet schema: devices and their groups, latest inventories, current findings and their
events, raw reports, enrollments, idempotency keys, pull targets and shared settings.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = 255


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(ID), primary_key=True),
        sa.Column("hostname", sa.String(ID), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("os", sa.String(ID), nullable=False),
        sa.Column("groups", sa.Text, nullable=False),
        sa.Column("agent_groups", sa.Text, nullable=False),
        sa.Column("attributes", sa.Text, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("agent_version", sa.String(64), nullable=False),
        sa.Column("banlist_serial", sa.Integer, nullable=True),
        sa.Column("banlist_signer", sa.String(ID), nullable=False),
        sa.Column("compliant", sa.Boolean, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("last_report_id", sa.String(ID), nullable=False),
        sa.Column("reports", sa.Integer, nullable=False),
        sa.Column("state_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_devices_last_seen", "devices", ["last_seen"])
    op.create_index("ix_devices_kind", "devices", ["kind"])
    op.create_index("ix_devices_compliant", "devices", ["compliant"])
    op.create_index("ix_devices_banlist_serial", "devices", ["banlist_serial"])
    op.create_table(
        "device_groups",
        sa.Column("device_id", sa.String(ID), sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("group_name", sa.String(ID), primary_key=True),
    )
    op.create_index("ix_device_groups_group", "device_groups", ["group_name"])
    op.create_table(
        "inventories",
        sa.Column("device_id", sa.String(ID), sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("updated", sa.Float, nullable=False),
        sa.Column("apps", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_table(
        "findings",
        sa.Column("device_id", sa.String(ID), sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("entry", sa.String(ID), primary_key=True),
        sa.Column("app_key", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("matched_by", sa.Text, nullable=False),
        sa.Column("app", sa.Text, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("resolved_at", sa.Float, nullable=True),
    )
    op.create_index("ix_findings_entry_status", "findings", ["entry", "status"])
    op.create_index("ix_findings_resolved", "findings", ["resolved_at"])
    op.create_table(
        "finding_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(ID), nullable=False),
        sa.Column("entry", sa.String(ID), nullable=False),
        sa.Column("app_key", sa.String(32), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("app_name", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("report_id", sa.String(ID), nullable=False),
    )
    op.create_index("ix_events_device", "finding_events", ["device_id", "at"])
    op.create_index("ix_events_entry", "finding_events", ["entry", "at"])
    op.create_table(
        "reports",
        sa.Column("id", sa.String(ID), primary_key=True),
        sa.Column("device_id", sa.String(ID), nullable=False),
        sa.Column("received", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_reports_received", "reports", ["received"])
    op.create_table(
        "enrollments",
        sa.Column("device_id", sa.String(ID), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("enrolled", sa.Float, nullable=False),
        sa.UniqueConstraint("token_hash", name="uq_enrollments_token_hash"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(ID), primary_key=True),
        sa.Column("device_id", sa.String(ID), nullable=False),
        sa.Column("received", sa.Float, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
    )
    op.create_index("ix_idempotency_received", "idempotency_keys", ["received"])
    op.create_table(
        "pull_targets",
        sa.Column("url", sa.String(1024), primary_key=True),
        sa.Column("token_file", sa.Text, nullable=False),
        sa.Column("due", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=False),
        sa.Column("lease_until", sa.Float, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_ok", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("device_id", sa.String(ID), nullable=False),
    )
    op.create_table(
        "settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("settings", "pull_targets", "idempotency_keys", "enrollments", "reports", "finding_events",
                  "findings", "inventories", "device_groups", "devices"):
        op.drop_table(table)
