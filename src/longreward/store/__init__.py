"""The run store: call cache, finished work units and run metadata in one SQLite file."""

from ._calls import cached_calls
from ._lock import LOCK_FILENAME, OutputLock, RunLock, ServiceLock
from ._migrations import MIGRATIONS, apply_migrations, migration
from ._settings import TRANSPORT_KEYS, StaleRunError, check_stage_settings
from ._store import MEMORY, PROMPT_META_PREFIX, STORE_FILENAME, RunStore, scrub_secrets

__all__ = ["cached_calls", "LOCK_FILENAME", "MEMORY", "MIGRATIONS", "OutputLock", "RunLock", "STORE_FILENAME", "ServiceLock", "TRANSPORT_KEYS", "RunStore", "StaleRunError",
           "PROMPT_META_PREFIX", "apply_migrations", "check_stage_settings", "migration", "scrub_secrets"]
