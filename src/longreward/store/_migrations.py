"""Append-only schema migrations for the run store.

Each migration is a function registered with ``@migration`` and applied once, in order, in
its own transaction; the names already applied are kept in ``_migrations``. Never edit or
reorder a released migration: add a new one.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


def apply_migrations(db: sqlite3.Connection) -> list[str]:
    """Apply the pending migrations; return their names. Safe to call on every open.

    ``db`` must be in autocommit mode (``isolation_level=None``) so that the explicit
    ``BEGIN IMMEDIATE`` below owns the transaction: two processes opening the same new
    store cannot both run a migration.
    """
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    applied_now: list[str] = []
    for fn in MIGRATIONS:
        db.execute("BEGIN IMMEDIATE")
        try:
            done = db.execute("SELECT 1 FROM _migrations WHERE name = ?", (fn.__name__,)).fetchone()
            if done is None:
                fn(db)
                db.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                    (fn.__name__, time.time()),
                )
                applied_now.append(fn.__name__)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return applied_now


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    # calls: the model-call cache (key = sha256 of provider, model, messages, settings).
    db.execute(
        "CREATE TABLE calls (key TEXT PRIMARY KEY, output_json TEXT NOT NULL, created_at REAL NOT NULL)"
    )
    # items: finished work units per stage (answers, samples, pairs); a rerun skips them.
    db.execute(
        "CREATE TABLE items (stage TEXT NOT NULL, item_id TEXT NOT NULL, row_json TEXT NOT NULL,"
        " created_at REAL NOT NULL, PRIMARY KEY (stage, item_id))"
    )
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@migration
def m002_documents(db: sqlite3.Connection) -> None:
    # documents: each document a stage saw, once, by its hash (``document_key``). Output rows
    # name their document by that hash instead of repeating a 64k-token text per answer, and
    # ``pairs`` finds the text here.
    db.execute(
        "CREATE TABLE documents (key TEXT PRIMARY KEY, text TEXT NOT NULL, created_at REAL NOT NULL)"
    )


@migration
def m003_batches(db: sqlite3.Connection) -> None:
    # Batch mode (``longreward.judge.batch``): the reward's judge calls sent as rounds of
    # OpenAI batch-format requests. A killed run resumes the same batches from here.
    # batch_parts: one API batch, or one shard file in file mode, of a round.
    db.execute(
        "CREATE TABLE batch_parts (stage TEXT NOT NULL, round INTEGER NOT NULL,"
        " part INTEGER NOT NULL, mode TEXT NOT NULL, url TEXT NOT NULL,"
        " n_requests INTEGER NOT NULL, n_bytes INTEGER NOT NULL, name TEXT NOT NULL,"
        " status TEXT NOT NULL, file_id TEXT, batch_id TEXT, output_file_id TEXT,"
        " error_file_id TEXT, info_json TEXT, created_at REAL NOT NULL,"
        " updated_at REAL NOT NULL, PRIMARY KEY (stage, round, part))"
    )
    # batch_requests: which part carries each issued request. ``custom_id`` names one issue
    # (round + call-cache key), so a request re-issued in a later round is a new line.
    db.execute(
        "CREATE TABLE batch_requests (custom_id TEXT PRIMARY KEY, key TEXT NOT NULL,"
        " stage TEXT NOT NULL, round INTEGER NOT NULL, part INTEGER NOT NULL)"
    )
    db.execute("CREATE INDEX batch_requests_key ON batch_requests (key)")
    # batch_results: each result line read back (output or error file), once per issue.
    db.execute(
        "CREATE TABLE batch_results (custom_id TEXT PRIMARY KEY, key TEXT NOT NULL,"
        " round INTEGER NOT NULL, status INTEGER NOT NULL, body TEXT, code TEXT,"
        " source TEXT, created_at REAL NOT NULL)"
    )
    db.execute("CREATE INDEX batch_results_key ON batch_results (key)")


@migration
def m004_reward_service(db: sqlite3.Connection) -> None:
    # call_claims: a judge call one process is making, so that the other reward processes
    # sharing this store wait for its result instead of paying for it again (RunStore.claims).
    db.execute(
        "CREATE TABLE call_claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL,"
        " pid INTEGER NOT NULL, expires REAL NOT NULL)"
    )
    # served_rewards: the samples a reward service saw, by group (a prompt), with their judged
    # reward (NULL: it could not be scored), so that every process sharing the store can give
    # a sample that cannot be scored the group's mean: a neutral reward under the trainers'
    # group normalisation (serve._neutral).
    db.execute(
        "CREATE TABLE served_rewards (id INTEGER PRIMARY KEY, grp TEXT NOT NULL, reward REAL,"
        " at REAL NOT NULL)"
    )
    db.execute("CREATE INDEX served_rewards_grp ON served_rewards (grp, at)")
    # Metadata written before secrets were scrubbed on the way in (a run's settings held
    # --provider-option api_key=... in plain text): scrubbed now. Registered prompts are user
    # data, kept exactly.
    from ._store import PROMPT_META_PREFIX, scrub_secrets

    rows = db.execute("SELECT key, value FROM meta WHERE substr(key, 1, ?) != ?",
                      (len(PROMPT_META_PREFIX), PROMPT_META_PREFIX))
    for key, value in rows.fetchall():
        try:
            old = json.loads(value)
        except ValueError:
            continue
        new = scrub_secrets(old)
        if new != old:
            db.execute("UPDATE meta SET value = ? WHERE key = ?",
                       (json.dumps(new, ensure_ascii=False), key))
