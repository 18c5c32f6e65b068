"""The run store: call cache, finished work units and run metadata in one SQLite file."""

from ._lock import LOCK_FILENAME, OutputLock, RunLock
from ._migrations import MIGRATIONS, apply_migrations, migration
from ._settings import TRANSPORT_KEYS, StaleRunError, check_stage_settings
from ._store import STORE_FILENAME, RunStore

__all__ = ["LOCK_FILENAME", "MIGRATIONS", "OutputLock", "RunLock", "STORE_FILENAME", "TRANSPORT_KEYS", "RunStore", "StaleRunError",
           "apply_migrations", "check_stage_settings", "migration"]
