"""A database that explains itself: the detectors table, settings per verdict, a fixed ELA
scale, files linked to images, and the image_results / verdict_results views.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The built-in detectors that release 0.1.0 ran only when named. A database from that release
# records no such flag; its detectors table is filled from its verdicts with this, and every
# later scan rewrites the rows of the detectors it runs.
OFF_BY_DEFAULT_IN_0_1 = ("ela-cnn", "ela-patchnet", "srm-cnn", "gan-spectrum")


def _aggregate(column: str) -> str:
    """The detectors that flagged an image, as one comma-separated string, in name order."""
    if op.get_bind().dialect.name == "postgresql":
        return f"string_agg({column}, ',' ORDER BY {column})"
    # SQLite's group_concat takes no ORDER BY before 3.44; rows arrive in detector order from
    # the verdicts primary key (sha256, detector), which the subquery below makes explicit.
    return f"group_concat({column}, ',')"


def create_views() -> None:
    # One row per scanned path. overall: `fake` when a detector in the default set labelled
    # the image fake, `no-sign` when one judged it and none did, `unknown` when none could.
    # This is the rule of scanner/verdict.py; tests check that the two agree.
    op.execute(
        f"""
        CREATE VIEW image_results AS
        SELECT f.path AS path,
               f.sha256 AS sha256,
               CASE WHEN SUM(CASE WHEN v.label = 'fake' THEN 1 ELSE 0 END) > 0 THEN 'fake'
                    WHEN SUM(CASE WHEN v.label = 'real' THEN 1 ELSE 0 END) > 0 THEN 'no-sign'
                    ELSE 'unknown' END AS overall,
               MAX(CASE WHEN v.label <> 'not-applicable' THEN v.score END) AS score,
               {_aggregate("CASE WHEN v.label = 'fake' THEN v.detector END")} AS flagged_by,
               f.scanned_at AS scanned_at
        FROM files f
        LEFT JOIN (
            SELECT * FROM verdicts
            WHERE detector IN (SELECT name FROM detectors WHERE enabled_by_default)
            ORDER BY sha256, detector
        ) v ON v.sha256 = f.sha256
        WHERE f.status = 'ok'
        GROUP BY f.path, f.sha256, f.scanned_at
        """
    )
    # One row per verdict and path the image was seen at; in_default_set says whether it votes
    # in image_results.
    op.execute(
        """
        CREATE VIEW verdict_results AS
        SELECT f.path AS path, v.sha256 AS sha256, v.detector AS detector, v.label AS label,
               v.score AS score, v.threshold AS threshold, v.reason AS reason,
               v.detector_version AS detector_version, v.model_hash AS model_hash,
               v.settings AS settings, v.details AS details, v.scanned_at AS scanned_at,
               d.enabled_by_default AS in_default_set
        FROM verdicts v
        JOIN files f ON f.sha256 = v.sha256 AND f.status = 'ok'
        LEFT JOIN detectors d ON d.name = v.detector
        """
    )


def upgrade() -> None:
    op.create_table(
        "detectors",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("version", sa.String(50), nullable=False),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("enabled_by_default", sa.Boolean, nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    off = ", ".join(f"'{name}'" for name in OFF_BY_DEFAULT_IN_0_1)
    op.execute(
        "INSERT INTO detectors "
        "(name, version, threshold, enabled_by_default, description, updated_at) "
        f"SELECT detector, MAX(detector_version), MAX(threshold), "
        f"CASE WHEN detector IN ({off}) THEN FALSE ELSE TRUE END, NULL, MAX(scanned_at) "
        "FROM verdicts GROUP BY detector"
    )
    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(sa.Column("settings", sa.Text, nullable=True))
    with op.batch_alter_table("ela_images") as batch:
        batch.add_column(sa.Column("scale", sa.Integer, nullable=True))
    with op.batch_alter_table("watchers") as batch:
        batch.add_column(sa.Column("heartbeat_every", sa.Float, nullable=True))
    # A file that failed keeps the hash of its bytes in the errors table only, so that every
    # files.sha256 names a stored image.
    op.execute(
        "UPDATE files SET sha256 = NULL "
        "WHERE sha256 IS NOT NULL AND sha256 NOT IN (SELECT sha256 FROM images)"
    )
    with op.batch_alter_table("files") as batch:
        batch.create_foreign_key("fk_files_sha256_images", "images", ["sha256"], ["sha256"])
    create_views()


def downgrade() -> None:
    op.execute("DROP VIEW verdict_results")
    op.execute("DROP VIEW image_results")
    with op.batch_alter_table("files") as batch:
        batch.drop_constraint("fk_files_sha256_images", type_="foreignkey")
    with op.batch_alter_table("watchers") as batch:
        batch.drop_column("heartbeat_every")
    with op.batch_alter_table("ela_images") as batch:
        batch.drop_column("scale")
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_column("settings")
    op.drop_table("detectors")
