"""Alembic environment. The scanner passes its own connection (see scanner.store.engine.migrate);
the `alembic` command line gets one from SCANNER_DB or the ini's sqlalchemy.url."""

from alembic import context
from sqlalchemy import create_engine

from scanner.config import db_url
from scanner.store.tables import metadata

config = context.config


def run_migrations(connection) -> None:
    # Batch mode lets later migrations alter SQLite tables (copy-and-move).
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or db_url())
    with engine.begin() as conn:
        run_migrations(conn)
