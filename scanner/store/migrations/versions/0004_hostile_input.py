"""Hostile input: file names that are not UTF-8, errors retried when their cause may have gone,
and files that could not be scanned listed in image_results.

- files.checked_with: for an error row, the scanner version and limits it was refused with.
- Paths are stored in the form of scanner/paths.py, which doubles a U+FFFD that is really in a
  name (a byte that is not UTF-8 is U+FFFD and two hex digits); existing rows are converted.
- image_results gains the rows of files with status 'error', as overall 'error'.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_0003 = importlib.import_module("scanner.store.migrations.versions.0003_explained")


def _double_replacement_characters(undo: bool = False) -> None:
    one, two = "\ufffd", "\ufffd\ufffd"
    for table in ("files", "errors"):
        op.get_bind().execute(
            sa.text(f"UPDATE {table} SET path = replace(path, :old, :new) WHERE path LIKE :has"),
            {"old": two if undo else one, "new": one if undo else two, "has": f"%{one}%"},
        )


def upgrade() -> None:
    op.execute("DROP VIEW image_results")
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("checked_with", sa.Text, nullable=True))
    _double_replacement_characters()
    # The rule of scanner/verdict.py, with `error` for a file that could not be scanned.
    op.execute(
        f"""
        CREATE VIEW image_results AS
        SELECT f.path AS path,
               f.sha256 AS sha256,
               CASE WHEN f.status <> 'ok' THEN 'error'
                    WHEN SUM(CASE WHEN v.label = 'fake' THEN 1 ELSE 0 END) > 0 THEN 'fake'
                    WHEN SUM(CASE WHEN v.label = 'real' THEN 1 ELSE 0 END) > 0 THEN 'no-sign'
                    ELSE 'unknown' END AS overall,
               MAX(CASE WHEN v.label <> 'not-applicable' THEN v.score END) AS score,
               {_0003._aggregate("CASE WHEN v.label = 'fake' THEN v.detector END")} AS flagged_by,
               f.scanned_at AS scanned_at
        FROM files f
        LEFT JOIN (
            SELECT * FROM verdicts
            WHERE detector IN (SELECT name FROM detectors WHERE enabled_by_default)
            ORDER BY sha256, detector
        ) v ON v.sha256 = f.sha256
        GROUP BY f.path, f.sha256, f.status, f.scanned_at
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW image_results")
    op.execute("DROP VIEW verdict_results")
    _double_replacement_characters(undo=True)
    with op.batch_alter_table("files") as batch:
        batch.drop_column("checked_with")
    _0003.create_views()
