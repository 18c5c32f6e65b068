"""``RunStore``: one SQLite file per run directory holding the call cache, the finished work
units of each stage, and run metadata.

Every write commits at once (autocommit), so a run killed with ``kill -9`` loses nothing it had
written, and a rerun skips what is done. WAL lets readers (a report, a second process) look
while the run writes. One connection is shared between threads under a lock.

Secrets are never written here: cache keys hold provider and model names only, outputs hold
model text and token counts, and metadata (a run's settings and config, which carry provider
options) goes through ``scrub_secrets`` on its way in.

Reward services share one store between processes (``store._lock.ServiceLock``). With
``claims`` on, a judge call one process is making is *claimed* in the store, so another
process about to make the same call waits for its result instead of paying for it twice: the
cross-process form of the judge client's single-flight (``judge._cache``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from ..io.files import dumps
from ._migrations import apply_migrations

STORE_FILENAME = "longreward.sqlite"
MEMORY = ":memory:"

#: meta key of the nonce secret (``verdict_secret``)
_SECRET_KEY = "secret:verdict_nonce"

_PAGE = 500  # rows() reads this many rows per query, so the lock is never held while yielding

#: a claim on a judge call older than this is void even if its holder still runs (a hung call)
CLAIM_TTL = 900.0
#: meta keys of a reward service's registered prompts: ``<prefix><id>`` → {document, query}
PROMPT_META_PREFIX = "serve.prompt."
#: served rewards kept besides those of the last ``window`` seconds: the running mean's span
_RECENT_REWARDS = 1000


def scrub_secrets(value: Any, key: str | None = None) -> Any:
    """``value`` (JSON-like) with credentials masked: every value under a credential-shaped
    key (``api_key``, ``token``, ``password``... as ``_util.redact`` defines them), every
    value of a ``*headers`` mapping (a header is as often a credential as not; the lock file
    masks them all too), and credential-shaped text anywhere (``sk-…``, ``Bearer …``, JWTs).
    Names of variables that hold a key (``api_key_env``, any ``*_env``) are kept: they are
    not secrets."""
    from .._util.redact import MASK, redact

    if (key is not None and value not in (None, "", [], {}) and not isinstance(value, bool)
            and not key.lower().endswith("_env")):
        # the key whole and each of its words (hf_token, x-auth-token) as a key=value pair:
        # masked by redact() means credential-shaped
        for name in (key, *re.split(r"[_.\-\s]+", key)):
            probe = f"{name}=longreward-probe"
            if name and redact(probe) != probe:
                return MASK
    if isinstance(value, dict):
        headers = key is not None and key.lower().endswith("headers")
        return {k: (MASK if headers and v not in (None, "") else scrub_secrets(v, str(k)))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_secrets(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


class RewardStats(NamedTuple):
    group_mean: float | None
    group_judged: int
    group_seen: int
    running_mean: float | None
    running_n: int


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class RunStore:
    """The SQLite store of one run. ``path`` is a run directory (the file is
    ``<dir>/longreward.sqlite``), a path ending in ``.sqlite``/``.db``, or ``":memory:"``
    (a store of this process only, gone when closed)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        if str(path) != MEMORY:
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
        #: claim judge calls across processes (reward services sharing this store)
        self.claims = False
        self._host = socket.gethostname()
        self._owner = f"{self._host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

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
            if self.claims:
                self.db.execute("DELETE FROM call_claims WHERE key = ? AND owner = ?",
                                (key, self._owner))

    def replace_call(self, key: str, value: dict[str, Any]) -> None:
        """Rewrite a cached output with a smaller one of the same reply (the judge client
        drops the token alternatives a weighed verdict did not read); a no-op without it."""
        with self._lock:
            self.db.execute("UPDATE calls SET output_json = ? WHERE key = ?",
                            (dumps(value), key))

    def claim_call(self, key: str) -> bool:
        """Whether this store object may make the judge call ``key`` now: no other process
        holds a live claim on it (this one takes it), or ``claims`` is off. A claim dies
        with its holder (a dead process on this host), when released, or after
        ``CLAIM_TTL``."""
        if not self.claims:
            return True
        now = time.time()
        with self._lock:
            # a read first: a process waiting on a live claim polls without taking the
            # write lock the other processes need to record their results
            if not self._claimable(key, now):
                return False
            self.db.execute("BEGIN IMMEDIATE")
            try:
                mine = self._claimable(key, now)
                if mine:
                    self.db.execute(
                        "INSERT OR REPLACE INTO call_claims (key, owner, host, pid, expires) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (key, self._owner, self._host, os.getpid(), now + CLAIM_TTL))
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        return mine

    def _claimable(self, key: str, now: float) -> bool:
        row = self.db.execute("SELECT owner, host, pid, expires FROM call_claims WHERE key = ?",
                              (key,)).fetchone()
        return row is None or row[0] == self._owner or row[3] < now or (
            row[1] == self._host and not _alive(int(row[2])))

    def release_call(self, key: str) -> None:
        """Give up this store object's claim on ``key`` (the call failed or was cancelled):
        a waiting process makes the call itself."""
        if not self.claims:
            return
        with self._lock:
            self.db.execute("DELETE FROM call_claims WHERE key = ? AND owner = ?",
                            (key, self._owner))

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

    # ------------------------------------------------------------------ served rewards

    def record_reward(self, group: str, reward: float | None, at: float | None = None) -> None:
        """Keep a sample a reward service saw for ``group`` (a prompt) and its judged reward
        (None: it could not be scored)."""
        with self._lock:
            cursor = self.db.execute(
                "INSERT INTO served_rewards (grp, reward, at) VALUES (?, ?, ?)",
                (group, None if reward is None else float(reward),
                 time.time() if at is None else at))
            if cursor.lastrowid and cursor.lastrowid % 512 == 0:
                self._prune_rewards()

    def _prune_rewards(self, keep_seconds: float = 86400.0) -> None:
        # Bounded: only the last day's samples and the most recent ones are ever read.
        self.db.execute(
            "DELETE FROM served_rewards WHERE at < ? AND id <= "
            "(SELECT MAX(id) FROM served_rewards) - ?",
            (time.time() - keep_seconds, 10 * _RECENT_REWARDS))

    def reward_stats(self, group: str, since: float) -> RewardStats:
        """``group``'s samples recorded at or after ``since`` (their judged mean, how many
        were judged, how many seen) and the running mean of the last judged rewards of every
        group."""
        with self._lock:
            g_mean, g_judged, g_seen = self.db.execute(
                "SELECT AVG(reward), COUNT(reward), COUNT(*) FROM served_rewards "
                "WHERE grp = ? AND at >= ?", (group, since)).fetchone()
            r_mean, r_n = self.db.execute(
                "SELECT AVG(reward), COUNT(*) FROM (SELECT reward FROM served_rewards "
                "WHERE reward IS NOT NULL ORDER BY id DESC LIMIT ?)",
                (_RECENT_REWARDS,)).fetchone()
        return RewardStats(g_mean, int(g_judged), int(g_seen), r_mean, int(r_n))

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

    def meta_with_prefix(self, prefix: str) -> dict[str, Any]:
        """Every metadata entry whose key starts with ``prefix``, by key."""
        with self._lock:
            rows = self.db.execute("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?",
                                   (len(prefix), prefix)).fetchall()
        return {key: json.loads(value) for key, value in rows}

    def set_meta(self, key: str, value: Any, *, scrub: bool = True) -> None:
        """Store a JSON-serializable value, credentials masked (``scrub_secrets``): a run's
        settings carry provider options, which may hold a key. ``scrub=False`` for user
        data that must come back exactly (a registered prompt's question)."""
        blob = dumps(scrub_secrets(value) if scrub else value)
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
