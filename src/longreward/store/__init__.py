"""The run store: call cache, finished work units and run metadata in one SQLite file."""

from ._migrations import MIGRATIONS, apply_migrations, migration
from ._store import STORE_FILENAME, RunStore

__all__ = ["MIGRATIONS", "STORE_FILENAME", "RunStore", "apply_migrations", "migration"]
