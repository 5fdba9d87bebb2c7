"""Opening a database: engine settings per dialect, and schema migrations to the current head."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

MIGRATIONS = Path(__file__).with_name("migrations")
# How long a writer waits for another process's write transaction before giving up.
DEFAULT_BUSY_TIMEOUT_S = 60.0
WRITE = {"scanner_write": True}


class DatabaseError(Exception):
    """The database cannot be opened, upgraded or written; the message says why."""


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL; None for other databases and in-memory ones."""
    if not url.startswith("sqlite"):
        return None
    database = url.split("///", 1)[-1] if "///" in url else ""
    return None if database in ("", ":memory:") else database


def _foreign(tables) -> DatabaseError:
    names = ", ".join(sorted(tables)[:5])
    return DatabaseError(f"not a scanner database (it has tables {names}); refusing to touch it")


def _refuse_foreign_file(path: Path) -> None:
    """Before the first connection switches an existing file to WAL (a change to the file): a
    file that is not SQLite, or a SQLite database of someone else's, is refused untouched."""
    with open(path, "rb") as handle:
        header = handle.read(20)
    if not header.startswith(b"SQLite format 3\x00"):
        raise DatabaseError(f"{path} is not a SQLite database; refusing to touch it")
    if header[18] == 2:
        return  # WAL already: connecting changes nothing, and _migrate checks the tables
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as conn:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot read {path}: {exc}") from None
    if names and "alembic_version" not in names:
        raise _foreign(names)


def make_engine(url: str, *, create: bool = True) -> Engine:
    """An engine for `url`. SQLite gets WAL, a busy timeout and explicit BEGINs.

    With SQLite, a write transaction that starts as a read and later writes can fail at once
    with "database is locked" when another process wrote meanwhile (the busy handler is not
    called, to avoid deadlock). So every transaction opened with the WRITE execution option
    starts with BEGIN IMMEDIATE: it waits for the write lock up front, and cannot deadlock.

    With `create` false (the commands that only read) a missing SQLite file is an error, never
    created, and the file's journal mode is left as it is.
    """
    if url.startswith("sqlite"):
        database = sqlite_path(url)
        if database:
            path = Path(database).expanduser()
            if not create and not path.is_file():
                what = "is a folder, not a database" if path.is_dir() else "does not exist"
                raise DatabaseError(f"{database} {what} (`scanner scan` creates a database)")
            parent = path.resolve().parent
            if not parent.is_dir():
                raise DatabaseError(f"cannot create database {database}: {parent} is not a folder")
            if create and path.is_file() and path.stat().st_size:
                _refuse_foreign_file(path)
        busy_ms = int(float(os.environ.get("SCANNER_DB_TIMEOUT", DEFAULT_BUSY_TIMEOUT_S)) * 1000)
        engine = create_engine(url, connect_args={"timeout": busy_ms / 1000})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:
            # Take transaction control away from the sqlite3 module; _on_begin emits BEGIN.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            # The timeout first: switching a new file to WAL needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            if create:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection) -> None:
            write = connection.get_execution_options().get("scanner_write")
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError, ImportError) as exc:
        if url.startswith("postgres"):
            raise DatabaseError(
                "PostgreSQL needs its driver: pip install 'scanner[postgres]'"
            ) from None
        raise DatabaseError(f"no driver for {url.split(':', 1)[0]}: {exc}") from None
    except ArgumentError as exc:
        raise DatabaseError(f"not a database URL: {exc}") from None


# The advisory lock every scanner process takes on PostgreSQL while it creates or upgrades the
# schema: any 64-bit number other applications are unlikely to use ("scanner" in ASCII).
MIGRATION_LOCK = int.from_bytes(b"scanner", "big")


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine: Engine, attempts: int = 8) -> None:
    """Bring the schema to the newest revision this release knows; refuse a newer database.

    Processes that open a new SQLite file at the same moment can see "database is locked"
    without the busy timeout applying (seen once in CI, while the file was being created and
    switched to WAL). Migrating is idempotent, so such an error is retried with backoff.
    """
    for attempt in range(attempts):
        try:
            return _migrate(engine)
        except DatabaseError as exc:
            transient = "locked" in str(exc) or "busy" in str(exc)
            if not transient or attempt == attempts - 1:
                raise
            engine.dispose()
            time.sleep(0.05 * 2**attempt)


def _refuse_foreign(connection, current: str | None) -> None:
    """A database without our revision table but with tables of its own is someone else's.

    The revision and the table list are read by two statements, and PostgreSQL gives each
    statement its own snapshot: another scanner process may commit the whole schema between
    them (seen in CI with four processes opening a fresh database). So when the list shows the
    revision table, the revision is read again, after the list."""
    if current is None:
        names = inspect(connection).get_table_names()
        if "alembic_version" in names:
            current = MigrationContext.configure(connection).get_current_revision()
        others = [t for t in names if t != "alembic_version"]
        if current is None and others:
            raise _foreign(others)


def _migrate(engine: Engine) -> None:
    config = _alembic_config()
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            _refuse_foreign(connection, current)
        if current == head:
            return
        known = {rev.revision for rev in script.walk_revisions()}
        if current is not None and current not in known:
            raise DatabaseError(
                f"the database is at schema revision {current}, newer than this scanner "
                f"knows (newest: {head}); upgrade scanner to use it"
            )
        # One transaction, holding the write lock: a second process that starts at the same
        # moment waits, then finds the schema already at head and does nothing. SQLite's is
        # BEGIN IMMEDIATE; PostgreSQL takes no lock for CREATE TABLE until it collides, so the
        # transaction first takes an advisory lock of its own, released when it ends.
        with engine.connect().execution_options(**WRITE) as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                )
            current = MigrationContext.configure(connection).get_current_revision()
            _refuse_foreign(connection, current)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot open database {engine.url!r}: {exc}") from exc


def check_current(engine: Engine) -> None:
    """For the commands that only read: the database must be ours and at the current schema.
    Nothing is created or changed."""
    script = ScriptDirectory.from_config(_alembic_config())
    head = script.get_current_head()
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            _refuse_foreign(connection, current)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read database {engine.url!r}: {exc}") from exc
    if current == head:
        return
    if current is None:
        raise DatabaseError("the database is empty (`scanner scan` fills it)")
    if current not in {rev.revision for rev in script.walk_revisions()}:
        raise DatabaseError(
            f"the database is at schema revision {current}, newer than this scanner knows "
            f"(newest: {head}); upgrade scanner to use it"
        )
    raise DatabaseError(
        f"the database was made by an older scanner (schema {current}, this one: {head}); "
        "the next `scanner scan` or `scanner watch` with it upgrades it"
    )


def schema_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
