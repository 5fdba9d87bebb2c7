"""Opening a database: engine settings per dialect, and schema migrations to the current head."""

from __future__ import annotations

import os
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

MIGRATIONS = Path(__file__).with_name("migrations")
# How long a writer waits for another process's write transaction before giving up.
DEFAULT_BUSY_TIMEOUT_S = 60.0
WRITE = {"scanner_write": True}


class DatabaseError(Exception):
    """The database cannot be opened, upgraded or written; the message says why."""


def make_engine(url: str) -> Engine:
    """An engine for `url`. SQLite gets WAL, a busy timeout and explicit BEGINs.

    With SQLite, a write transaction that starts as a read and later writes can fail at once
    with "database is locked" when another process wrote meanwhile (the busy handler is not
    called, to avoid deadlock). So every transaction opened with the WRITE execution option
    starts with BEGIN IMMEDIATE: it waits for the write lock up front, and cannot deadlock.
    """
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1] if "///" in url else ""
        if database and database != ":memory:":
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise DatabaseError(f"cannot create database {database}: {parent} is not a folder")
        busy_ms = int(float(os.environ.get("SCANNER_DB_TIMEOUT", DEFAULT_BUSY_TIMEOUT_S)) * 1000)
        engine = create_engine(url, connect_args={"timeout": busy_ms / 1000})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:
            # Take transaction control away from the sqlite3 module; _on_begin emits BEGIN.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            # The timeout first: switching a new file to WAL needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection) -> None:
            write = connection.get_execution_options().get("scanner_write")
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True)


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


def _migrate(engine: Engine) -> None:
    config = _alembic_config()
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        if current == head:
            return
        known = {rev.revision for rev in script.walk_revisions()}
        if current is not None and current not in known:
            raise DatabaseError(
                f"the database is at schema revision {current}, newer than this scanner "
                f"knows (newest: {head}); upgrade scanner to use it"
            )
        # One transaction, holding the write lock: a second process that starts at the same
        # moment waits, then finds the schema already at head and does nothing.
        with engine.connect().execution_options(**WRITE) as connection, connection.begin():
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot open database {engine.url!r}: {exc}") from exc


def schema_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
