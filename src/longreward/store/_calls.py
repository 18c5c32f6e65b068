"""The run store as a judge client's call cache, for a block of calls: what the eval commands
and listwise pair selection share (a rerun repeats no call)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._lock import RunLock
from ._store import RunStore


@contextmanager
def cached_calls(client: Any, run_dir: str | Path) -> Iterator[RunStore]:
    """Hold the run directory's lock and use its store as ``client``'s call cache, so the
    calls made inside come back from the store on a rerun. A client that already has a cache
    keeps it."""
    with RunLock(Path(run_dir)), RunStore(Path(run_dir)) as store:
        attached = client.cache is None
        if attached:
            client.cache = store
        try:
            yield store
        finally:
            if attached:
                client.cache = None
