"""The database as the pipeline sees it: what is known already, and saving one batch at a time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, Table, delete, insert, select, tuple_, update
from sqlalchemy.exc import SQLAlchemyError

from scanner.paths import to_text
from scanner.store import tables
from scanner.store.engine import WRITE, DatabaseError, check_current, make_engine, migrate

CHUNK = 500  # rows per IN (...) query; SQLite allows 32766 variables, PostgreSQL more


def utcnow() -> datetime:
    """Now in UTC, naive: every time in the database is UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def iso(moment: datetime | None) -> str | None:
    """The one form every command prints a time in: ISO 8601, seconds, UTC marked `Z`."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="seconds") + "Z"


@dataclass(frozen=True)
class FileState:
    size_bytes: int
    mtime_ns: int
    sha256: str | None
    status: str
    checked_with: str | None = None


@dataclass
class FileRecord:
    path: str
    size_bytes: int
    mtime_ns: int
    sha256: str | None
    status: str = "ok"
    # An error row's file: the limits and scanner version it was refused with. It is read
    # again when they change (a raised size limit, a decoder that learnt the format).
    checked_with: str | None = None


@dataclass
class ImageRecord:
    sha256: str
    format: str
    width: int
    height: int
    size_bytes: int


@dataclass
class ElaRecord:
    sha256: str
    quality: int
    max_diff: int
    scale: int
    width: int
    height: int
    png: bytes


@dataclass
class VerdictRecord:
    sha256: str
    detector: str
    detector_version: str
    model_hash: str | None
    label: str
    score: float | None
    threshold: float | None
    reason: str | None
    details: dict | None
    heatmap_png: bytes | None
    seconds: float
    settings: dict | None = None


@dataclass
class ErrorRecord:
    path: str
    kind: str
    message: str
    detector: str = ""
    sha256: str | None = None


@dataclass
class Batch:
    """Everything one pipeline batch learned; saved in a single transaction."""

    images: list[ImageRecord] = field(default_factory=list)
    ela: list[ElaRecord] = field(default_factory=list)
    verdicts: list[VerdictRecord] = field(default_factory=list)
    files: list[FileRecord] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    released: list[str] = field(default_factory=list)  # claims (sha256) this batch gives up
    holder: str = ""

    def __len__(self) -> int:
        return len(self.files) + len(self.errors) + len(self.verdicts) + len(self.released)


def _conflict_insert(conn: Connection, table: Table):
    """An INSERT that can say what to do on a key conflict (SQLite, PostgreSQL), or None."""
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    elif conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        return None
    return dialect_insert(table)


def _upsert(conn: Connection, table: Table, rows: list[dict], keep: Sequence[str] = ()) -> None:
    """Insert rows, replacing those whose primary key exists (but not the `keep` columns)."""
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    # PostgreSQL refuses one statement that touches a row twice: the last row for a key wins.
    rows = list({tuple(r[k] for k in keys): r for r in rows}.values())
    stmt = _conflict_insert(conn, table)
    if stmt is not None:
        update = {c: stmt.excluded[c] for c in rows[0] if c not in keys and c not in keep}
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=update), rows)
        return
    # Other databases: delete and re-insert, inside the caller's transaction.
    key_cols = tuple_(*(table.c[k] for k in keys))
    conn.execute(delete(table).where(key_cols.in_([tuple(r[k] for k in keys) for r in rows])))
    conn.execute(insert(table), rows)


def _insert_new(conn: Connection, table: Table, rows: list[dict]) -> None:
    """Insert the rows whose primary key is not there yet; leave the others as they are. Two
    processes inserting the same key at once: one waits for the other, neither fails."""
    stmt = _conflict_insert(conn, table)
    if stmt is not None:
        conn.execute(stmt.on_conflict_do_nothing(), rows)
        return
    keys = [c.name for c in table.primary_key.columns]
    key_cols = tuple_(*(table.c[k] for k in keys))
    present = set(
        conn.execute(
            select(key_cols).where(key_cols.in_([tuple(r[k] for k in keys) for r in rows]))
        ).all()
    )
    new = [r for r in rows if tuple(r[k] for k in keys) not in present]
    if new:
        conn.execute(insert(table), new)


def _chunks(items: Sequence, size: int = CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class DetectorRecord:
    name: str
    version: str
    threshold: float | None
    enabled_by_default: bool
    description: str | None = None


def settings_json(settings: dict | None) -> str | None:
    """The one text form of a verdict's settings: what is stored, and what is compared."""
    return json.dumps(settings, sort_keys=True, default=str) if settings else None


class Database:
    """A scanner database at a SQLAlchemy URL.

    `create=True` (scan, watch): created if missing and migrated to the current schema.
    `create=False` (the commands that read): it must exist, be ours and be current; nothing is
    created or changed.
    """

    def __init__(self, url: str, *, create: bool = True):
        self.url = url
        self.engine = make_engine(url, create=create)
        try:
            if create:
                migrate(self.engine)
            else:
                check_current(self.engine)
        except DatabaseError:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise DatabaseError(f"reading {self.engine.url!r} failed: {exc}") from exc

    @contextmanager
    def write(self) -> Iterator[Connection]:
        try:
            with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise DatabaseError(f"writing {self.engine.url!r} failed: {exc}") from exc

    def claim(
        self,
        shas: Sequence[str],
        holder: str,
        stale_after: float,
        is_dead: Callable[[str], bool] = lambda holder: False,
    ) -> set[str]:
        """Claim the pictures `shas` for `holder` (host:pid); returns those it now holds. A
        claim held by another is taken over when `is_dead(its holder)` or it is older than
        `stale_after` seconds; otherwise that picture is being worked on elsewhere."""
        if not shas:
            return set()
        c = tables.claims
        now = utcnow()
        stale = now - timedelta(seconds=stale_after)
        held: set[str] = set()
        with self.write() as conn:
            for chunk in _chunks(sorted(set(shas))):
                rows = [{"sha256": sha, "holder": holder, "claimed_at": now} for sha in chunk]
                _insert_new(conn, c, rows)  # a claim another holds stays, for now
                for row in conn.execute(select(c).where(c.c.sha256.in_(chunk))):
                    if row.holder == holder:
                        held.add(row.sha256)
                    elif row.claimed_at <= stale or is_dead(row.holder):
                        taken = conn.execute(
                            update(c)
                            .where(c.c.sha256 == row.sha256, c.c.holder == row.holder)
                            .values(holder=holder, claimed_at=now)
                        )
                        if taken.rowcount == 1:
                            held.add(row.sha256)
        return held

    def file_states(self, paths: Sequence[str]) -> dict[str, FileState]:
        """What is stored of each path (as the file system gives it) that has a file row."""
        found: dict[str, FileState] = {}
        f = tables.files
        stored = {to_text(p): p for p in paths}
        with self.read() as conn:
            for chunk in _chunks(list(stored)):
                query = select(
                    f.c.path, f.c.size_bytes, f.c.mtime_ns, f.c.sha256, f.c.status, f.c.checked_with
                )
                for row in conn.execute(query.where(f.c.path.in_(chunk))):
                    found[stored[row.path]] = FileState(
                        row.size_bytes, row.mtime_ns, row.sha256, row.status, row.checked_with
                    )
        return found

    def detector_versions(self, shas: Iterable[str]) -> dict[str, dict[str, tuple]]:
        """For each known image among `shas`: {detector: (version, settings JSON)} of its
        stored verdicts. A stored image without verdicts maps to {}; an unknown one is absent."""
        v, e = tables.verdicts, tables.images
        found: dict[str, dict[str, tuple]] = {}
        with self.read() as conn:
            for chunk in _chunks(sorted(set(shas))):
                for (sha,) in conn.execute(select(e.c.sha256).where(e.c.sha256.in_(chunk))):
                    found[sha] = {}
                query = select(v.c.sha256, v.c.detector, v.c.detector_version, v.c.settings)
                for row in conn.execute(query.where(v.c.sha256.in_(chunk))):
                    found.setdefault(row.sha256, {})[row.detector] = (
                        row.detector_version,
                        row.settings,
                    )
        return found

    def fake_labels(self, shas: Iterable[str]) -> dict[str, set[str]]:
        """For each of `shas` with any: the detectors whose stored verdict labels it fake."""
        v = tables.verdicts
        found: dict[str, set[str]] = {}
        with self.read() as conn:
            for chunk in _chunks(sorted(set(shas))):
                query = select(v.c.sha256, v.c.detector).where(
                    v.c.sha256.in_(chunk), v.c.label == "fake"
                )
                for row in conn.execute(query):
                    found.setdefault(row.sha256, set()).add(row.detector)
        return found

    def record_detectors(self, detectors: Sequence[DetectorRecord]) -> None:
        """Remember the detectors a scan runs with (version, threshold, on by default)."""
        rows = [asdict(d) | {"updated_at": utcnow()} for d in detectors]
        with self.write() as conn:
            _upsert(conn, tables.detectors, rows)

    def heartbeat(self, watcher: dict) -> None:
        """Record a watch daemon's state (keys: the columns of the watchers table)."""
        with self.write() as conn:
            _upsert(conn, tables.watchers, [watcher | {"heartbeat_at": utcnow()}])

    def forget_watchers(self, ids: Sequence[str]) -> int:
        """Delete the rows of watch daemons that are no longer running; returns how many."""
        with self.write() as conn:
            w = tables.watchers
            return conn.execute(delete(w).where(w.c.id.in_(list(ids)))).rowcount

    def save(self, batch: Batch) -> None:
        """Store a batch atomically. Errors of every path in it are replaced by its new ones."""
        now = utcnow()
        with self.write() as conn:
            image_rows = [asdict(r) | {"first_seen_at": now} for r in batch.images]
            _upsert(conn, tables.images, image_rows, keep=("first_seen_at",))
            _upsert(conn, tables.ela_images, [asdict(r) for r in batch.ela])
            verdict_rows = []
            for record in batch.verdicts:
                row = asdict(record) | {"scanned_at": now}
                row["details"] = json.dumps(record.details, default=str) if record.details else None
                row["settings"] = settings_json(record.settings)
                verdict_rows.append(row)
            _upsert(conn, tables.verdicts, verdict_rows)
            # Paths in their stored form (scanner/paths.py): a name that is not UTF-8 as well.
            file_rows = [
                asdict(r) | {"path": to_text(r.path), "scanned_at": now} for r in batch.files
            ]
            error_rows = [asdict(r) | {"path": to_text(r.path), "at": now} for r in batch.errors]
            _upsert(conn, tables.files, file_rows)
            touched = sorted({r["path"] for r in file_rows} | {r["path"] for r in error_rows})
            for chunk in _chunks(touched):
                conn.execute(delete(tables.errors).where(tables.errors.c.path.in_(chunk)))
            _upsert(conn, tables.errors, error_rows)
            for chunk in _chunks(sorted(set(batch.released))):
                conn.execute(
                    delete(tables.claims).where(
                        tables.claims.c.sha256.in_(chunk), tables.claims.c.holder == batch.holder
                    )
                )
