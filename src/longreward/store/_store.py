"""``RunStore``: one SQLite file per run directory holding the call cache, the finished work
units of each stage, and run metadata.

Every write commits at once (autocommit), so a run killed with ``kill -9`` loses nothing it had
written, and a rerun skips what is done. WAL lets readers (a report, a second process) look
while the run writes. One connection is shared between threads under a lock.

Secrets are never written here: cache keys hold provider and model names only, and outputs
hold model text and token counts.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from ..io.files import dumps
from ._migrations import apply_migrations

STORE_FILENAME = "longreward.sqlite"

#: meta key of the nonce secret (``verdict_secret``)
_SECRET_KEY = "secret:verdict_nonce"

_PAGE = 500  # rows() reads this many rows per query, so the lock is never held while yielding


class RunStore:
    """The SQLite store of one run. ``path`` is a run directory (the file is
    ``<dir>/longreward.sqlite``) or a path ending in ``.sqlite``/``.db``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        if path.suffix not in (".sqlite", ".sqlite3", ".db"):
            path = path / STORE_FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (the OS keeps the written pages); only a
        # power cut can drop the last commits, which a rerun recomputes.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            apply_migrations(self._db)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"the run store {self.path} is closed")
        return self._db

    # ------------------------------------------------------------------ call cache

    def get_call(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute("SELECT output_json FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_call(self, key: str, value: dict[str, Any]) -> None:
        # First write wins: the same key means the same request, and append-only keeps
        # earlier results reproducible.
        blob = dumps(value)
        with self._lock:
            self.db.execute(
                "INSERT OR IGNORE INTO calls (key, output_json, created_at) VALUES (?, ?, ?)",
                (key, blob, time.time()),
            )

    def n_calls(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    # ------------------------------------------------------------------ finished items

    def record(self, stage: str, item_id: str, row: dict[str, Any]) -> bool:
        """Keep a finished work unit. Idempotent: a second record of the same (stage, item_id)
        is ignored. Returns whether this call stored it."""
        blob = dumps(row)
        with self._lock:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO items (stage, item_id, row_json, created_at)"
                " VALUES (?, ?, ?, ?)",
                (stage, str(item_id), blob, time.time()),
            )
            return cursor.rowcount > 0

    def forget(self, stage: str, item_ids: list[str] | None = None) -> int:
        """Un-finish work units of ``stage`` (all of them when ``item_ids`` is None) so the
        next run redoes them; the call cache is kept, so redoing costs only the calls that
        had failed. Returns how many were forgotten."""
        with self._lock:
            if item_ids is None:
                cursor = self.db.execute("DELETE FROM items WHERE stage = ?", (stage,))
                return cursor.rowcount
            n = 0
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for item_id in item_ids:
                    n += self.db.execute("DELETE FROM items WHERE stage = ? AND item_id = ?",
                                         (stage, str(item_id))).rowcount
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            return n

    def finished_ids(self, stage: str) -> set[str]:
        with self._lock:
            rows = self.db.execute("SELECT item_id FROM items WHERE stage = ?", (stage,)).fetchall()
        return {r[0] for r in rows}

    def get_row(self, stage: str, item_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute(
                "SELECT row_json FROM items WHERE stage = ? AND item_id = ?", (stage, str(item_id))
            ).fetchone()
        return json.loads(row[0]) if row else None

    def rows(self, stage: str) -> Iterator[dict[str, Any]]:
        """The rows of ``stage`` in the order they were recorded."""
        last = 0
        while True:
            with self._lock:
                page = self.db.execute(
                    "SELECT rowid, row_json FROM items WHERE stage = ? AND rowid > ?"
                    " ORDER BY rowid LIMIT ?",
                    (stage, last, _PAGE),
                ).fetchall()
            if not page:
                return
            for rowid, blob in page:
                last = rowid
                yield json.loads(blob)

    def count(self, stage: str) -> int:
        with self._lock:
            return int(
                self.db.execute("SELECT COUNT(*) FROM items WHERE stage = ?", (stage,)).fetchone()[
                    0
                ]
            )

    def stages(self) -> list[str]:
        with self._lock:
            return [
                r[0] for r in self.db.execute("SELECT DISTINCT stage FROM items ORDER BY stage")
            ]

    # ------------------------------------------------------------------ documents

    def put_document(self, key: str, text: str) -> None:
        """Keep a document once by its hash (``io.records.document_key``)."""
        with self._lock:
            self.db.execute(
                "INSERT OR IGNORE INTO documents (key, text, created_at) VALUES (?, ?, ?)",
                (key, text, time.time()),
            )

    def get_document(self, key: str) -> str | None:
        with self._lock:
            row = self.db.execute("SELECT text FROM documents WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ metadata

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def verdict_secret(self) -> bytes:
        """The secret the judge's per-request nonces are derived from (``judge._verdict``):
        32 random bytes made the first time any process asks and kept in the meta table, so
        every rerun and every reward worker sharing this store derives the same nonces (and
        hits the same cached calls). Made with ``INSERT OR IGNORE``: two processes asking at
        once both read the one that was stored first. Never printed or logged; it is only as
        secret as this file, which the policy being trained never sees."""
        fresh = json.dumps(secrets.token_hex(32))
        with self._lock:
            self.db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                            (_SECRET_KEY, fresh))
            row = self.db.execute("SELECT value FROM meta WHERE key = ?",
                                  (_SECRET_KEY,)).fetchone()
        return bytes.fromhex(json.loads(row[0]))

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serializable value. Do not pass secrets (API keys, headers)."""
        blob = dumps(value)
        with self._lock:
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, blob),
            )

    # ------------------------------------------------------------------ lifecycle

    def journal_mode(self) -> str:
        with self._lock:
            return str(self.db.execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"
