"""Initial schema: images, files, ela_images, verdicts, errors.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("first_seen_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "files",
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scanned_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_files_sha256", "files", ["sha256"])
    op.create_table(
        "ela_images",
        sa.Column("sha256", sa.String(64), sa.ForeignKey("images.sha256"), primary_key=True),
        sa.Column("quality", sa.Integer, nullable=False),
        sa.Column("max_diff", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("png", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "verdicts",
        sa.Column("sha256", sa.String(64), sa.ForeignKey("images.sha256"), primary_key=True),
        sa.Column("detector", sa.String(100), primary_key=True),
        sa.Column("detector_version", sa.String(50), nullable=False),
        sa.Column("model_hash", sa.String(64), nullable=True),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("details", sa.Text, nullable=True),
        sa.Column("heatmap_png", sa.LargeBinary, nullable=True),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("scanned_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_verdicts_label", "verdicts", ["label"])
    op.create_index("ix_verdicts_scanned_at", "verdicts", ["scanned_at"])
    op.create_table(
        "errors",
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("detector", sa.String(100), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("errors", "verdicts", "ela_images", "files", "images"):
        op.drop_table(table)
