"""Watchers: one row per `scanner watch` process, its heartbeat and counters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watchers",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("roots", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
        sa.Column("stopped_at", sa.DateTime, nullable=True),
        sa.Column("queue_length", sa.Integer, nullable=False),
        sa.Column("scanned", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("last_scan_at", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("watchers")
