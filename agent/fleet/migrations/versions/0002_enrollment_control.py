"""Enrollment under the administrator's control, gateways and shared pull targets: revoked tokens,
leave to enroll a known device id again, an audit trail of enrollments, which device reported each
device, and which server's config lists each pull target.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = 255


def upgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("revoked_at", sa.Float, nullable=True))
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("reported_by", sa.String(ID), nullable=False, server_default=""))
    op.create_table(
        "reenroll_grants",
        sa.Column("device_id", sa.String(ID), primary_key=True),
        sa.Column("until", sa.Float, nullable=False),
        sa.Column("granted", sa.Float, nullable=False),
    )
    op.create_table(
        "enrollment_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(ID), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(ID), nullable=False),
    )
    op.create_index("ix_enrollment_events_device", "enrollment_events", ["device_id", "at"])
    op.create_table(
        "pull_target_sources",
        sa.Column("url", sa.String(1024), primary_key=True),
        sa.Column("source", sa.String(ID), primary_key=True),
        sa.Column("seen", sa.Float, nullable=False),
    )
    op.create_index("ix_pull_target_sources_seen", "pull_target_sources", ["seen"])


def downgrade() -> None:
    op.drop_table("pull_target_sources")
    op.drop_table("enrollment_events")
    op.drop_table("reenroll_grants")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("reported_by")
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("revoked_at")
