"""Storage: SQLAlchemy tables, migrations, writes and queries. Knows nothing of the CLI,
the pipeline or plugins."""

from scanner.store.database import Database
from scanner.store.engine import DatabaseError

__all__ = ["Database", "DatabaseError"]
