"""The database tables. Plain on purpose: `sqlite3 scanner.db .schema` should explain itself.

Times are UTC. Scores are P(fake). Migrations in migrations/versions/ create these; a change here
needs a new migration (see docs/development.md).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# One row per distinct picture, keyed by the SHA-256 of the file's bytes.
images = Table(
    "images",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("format", String(16), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("first_seen_at", DateTime, nullable=False),
)

# Where each picture was seen. size and mtime let an unchanged file be skipped unread.
# status is "ok" (the bytes were scanned; sha256 names the image) or "error" (sha256 is NULL:
# the errors table says why, and holds the hash of the bytes when they could be read).
files = Table(
    "files",
    metadata,
    Column("path", Text, primary_key=True),
    Column(
        "sha256",
        String(64),
        ForeignKey("images.sha256", name="fk_files_sha256_images"),
        nullable=True,
        index=True,
    ),
    Column("size_bytes", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("scanned_at", DateTime, nullable=False),
    # For status 'error': what the file was refused with (scanner version and limits); a file
    # refused by other limits or another version is read again (migration 0004).
    Column("checked_with", Text, nullable=True),
)

# The Error Level Analysis image of each picture, as PNG (longest side capped): the absolute
# difference between the image and its JPEG re-save at `quality`, multiplied by `scale` and
# clipped to 255 (a fixed scale, so brightness compares across images). scale is NULL for rows
# written before release 0.2, which were stretched per image so their brightest pixel was 255.
ela_images = Table(
    "ela_images",
    metadata,
    Column("sha256", String(64), ForeignKey("images.sha256"), primary_key=True),
    Column("quality", Integer, nullable=False),
    Column("max_diff", Integer, nullable=False),
    Column("scale", Integer, nullable=True),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("png", LargeBinary, nullable=False),
)

# The latest verdict of each detector on each picture. detector_version and model_hash say which
# model produced it, and settings (JSON) the scan settings it depended on (face crops, ELA
# quality, options): a change in any of them re-runs that detector.
verdicts = Table(
    "verdicts",
    metadata,
    Column("sha256", String(64), ForeignKey("images.sha256"), primary_key=True),
    Column("detector", String(100), primary_key=True),
    Column("detector_version", String(50), nullable=False),
    Column("model_hash", String(64), nullable=True),
    Column("label", String(16), nullable=False),
    Column("score", Float, nullable=True),
    Column("threshold", Float, nullable=True),
    Column("reason", Text, nullable=True),
    Column("details", Text, nullable=True),
    Column("settings", Text, nullable=True),
    Column("heatmap_png", LargeBinary, nullable=True),
    Column("seconds", Float, nullable=False),
    Column("scanned_at", DateTime, nullable=False),
    Index("ix_verdicts_label", "label"),
    Index("ix_verdicts_scanned_at", "scanned_at"),
)

# What went wrong, one row per (path, detector); detector is "" for errors about the file itself.
errors = Table(
    "errors",
    metadata,
    Column("path", Text, primary_key=True),
    Column("detector", String(100), primary_key=True),
    Column("sha256", String(64), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("at", DateTime, nullable=False),
)

# One row per `scanner watch` process (id: host:pid), updated every few seconds.
watchers = Table(
    "watchers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("roots", Text, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("heartbeat_at", DateTime, nullable=False),
    Column("stopped_at", DateTime, nullable=True),
    Column("queue_length", Integer, nullable=False),
    Column("scanned", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("last_scan_at", DateTime, nullable=True),
    # Seconds between heartbeats: a daemon silent for longer than two is reported gone.
    Column("heartbeat_every", Float, nullable=True),
)

# The detectors each scan ran with, as of the latest scan that used them. The overall verdict
# of an image counts the verdicts of the detectors in use: by default those with
# enabled_by_default true (the image_results view uses exactly that set).
detectors = Table(
    "detectors",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("version", String(50), nullable=False),
    Column("threshold", Float, nullable=True),
    Column("enabled_by_default", Boolean, nullable=False),
    Column("description", Text, nullable=True),
    Column("updated_at", DateTime, nullable=False),
)

# Pictures a scanning process is working on, so that processes sharing one database (several
# daemons, several machines) never judge the same picture at once: claimed before the work,
# deleted with the batch that stores its results. A claim whose holder (host:pid) is a dead
# process on the claimant's host, or that is older than the claim timeout, is taken over.
claims = Table(
    "claims",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("claimed_at", DateTime, nullable=False),
)
