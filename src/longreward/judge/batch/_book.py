"""The batch state of a run, in its run store: rounds and their parts (an API batch or a
shard file), which request each part carries, and every result line read back.

Everything a killed run needs to resume is here, written before the step it protects: a
part's lines and name before its upload (so a resumed run finds the upload by name instead of
sending it twice), its file id before the batch is created (so it finds the batch by its input
file instead of creating a second one), and a batch's results together with the part's
"ingested" mark (one transaction). The book has its own SQLite connection to the store file
(WAL mode: the store's other users are not held up).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...store import RunStore
from ._lines import ResultLine

#: part statuses after which nothing more comes back from the executor
FINISHED = ("ingested", "abandoned")
#: the code of a failed line that no longer counts (see ``supersede_failures``)
SUPERSEDED = "superseded"


@dataclass
class Part:
    stage: str
    round: int
    part: int
    mode: str
    url: str
    n_requests: int
    n_bytes: int
    name: str
    status: str
    file_id: str | None = None
    batch_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    info: dict[str, Any] | None = None
    created_at: float = 0.0

    @property
    def label(self) -> str:
        return f"round {self.round} part {self.part}"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class Issue:
    custom_id: str
    key: str
    round: int
    part: int


_PART_COLUMNS = ("stage", "round", "part", "mode", "url", "n_requests", "n_bytes", "name",
                 "status", "file_id", "batch_id", "output_file_id", "error_file_id",
                 "info_json", "created_at")


def _part(row: tuple[Any, ...]) -> Part:
    values = dict(zip(_PART_COLUMNS, row, strict=True))
    info = values.pop("info_json")
    return Part(**values, info=json.loads(info) if info else None)


class BatchBook:
    """Batch state of one run directory, for one stage (``sample`` or ``score``)."""

    def __init__(self, run_dir: str | Path, stage: str) -> None:
        # RunStore applies the migrations (m003_batches) and knows where the file is.
        with RunStore(run_dir) as store:
            self.path = store.path
        self.stage = stage
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0,
                                   check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=30000")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------ parts

    def next_round(self) -> int:
        row = self._db.execute("SELECT MAX(round) FROM batch_parts WHERE stage = ?",
                               (self.stage,)).fetchone()
        return int(row[0] or 0) + 1

    def add_parts(self, parts: list[tuple[Part, list[Issue]]]) -> None:
        """Record a round's parts and the requests each carries, in one transaction, before
        anything is sent (Batch API) or after their shards are written (file mode)."""
        now = time.time()
        with self._tx() as db:
            for part, issues in parts:
                db.execute(
                    f"INSERT INTO batch_parts ({', '.join(_PART_COLUMNS)}, updated_at) VALUES "
                    f"({', '.join('?' * (len(_PART_COLUMNS) + 1))})",
                    (self.stage, part.round, part.part, part.mode, part.url, part.n_requests,
                     part.n_bytes, part.name, part.status, part.file_id, part.batch_id,
                     part.output_file_id, part.error_file_id,
                     json.dumps(part.info) if part.info else None, now, now))
                db.executemany(
                    "INSERT INTO batch_requests (custom_id, key, stage, round, part)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(i.custom_id, i.key, self.stage, i.round, i.part) for i in issues])
                part.created_at = now

    def update_part(self, part: Part, **fields: Any) -> None:
        """Set fields of ``part`` (in memory and in the store)."""
        for name, value in fields.items():
            setattr(part, name, value)
        columns = {("info_json" if k == "info" else k): (json.dumps(v) if k == "info" else v)
                   for k, v in fields.items()}
        sets = ", ".join(f"{k} = ?" for k in columns)
        self._db.execute(
            f"UPDATE batch_parts SET {sets}, updated_at = ? WHERE stage = ? AND round = ?"
            " AND part = ?", (*columns.values(), time.time(), self.stage, part.round, part.part))

    def parts(self, *, round_no: int | None = None) -> list[Part]:
        query = f"SELECT {', '.join(_PART_COLUMNS)} FROM batch_parts WHERE stage = ?"
        args: list[Any] = [self.stage]
        if round_no is not None:
            query += " AND round = ?"
            args.append(round_no)
        return [_part(r) for r in self._db.execute(query + " ORDER BY round, part", args)]

    def get_part(self, round_no: int, part: int) -> Part:
        row = self._db.execute(
            f"SELECT {', '.join(_PART_COLUMNS)} FROM batch_parts WHERE stage = ? AND round = ?"
            " AND part = ?", (self.stage, round_no, part)).fetchone()
        if row is None:
            raise KeyError(f"{self.stage} round {round_no} part {part}")
        return _part(row)

    def issues_of(self, part: Part) -> list[Issue]:
        rows = self._db.execute(
            "SELECT custom_id, key, round, part FROM batch_requests WHERE stage = ? AND round = ?"
            " AND part = ? ORDER BY rowid", (self.stage, part.round, part.part))
        return [Issue(*r) for r in rows]

    def answered(self, part: Part) -> tuple[int, int]:
        """(result lines read, of which errors) for ``part``'s requests."""
        row = self._db.execute(
            "SELECT COUNT(r.custom_id), SUM(CASE WHEN r.code IS NOT NULL OR r.status < 200 OR"
            " r.status >= 300 THEN 1 ELSE 0 END) FROM batch_requests q JOIN batch_results r"
            " ON r.custom_id = q.custom_id WHERE q.stage = ? AND q.round = ? AND q.part = ?",
            (self.stage, part.round, part.part)).fetchone()
        return int(row[0] or 0), int(row[1] or 0)

    # ------------------------------------------------------------------ requests

    def open_issue(self, key: str) -> Issue | None:
        """The latest issue of ``key`` when it still waits for its result line (in a part
        that can still deliver one), else None."""
        row = self._db.execute(
            "SELECT q.custom_id, q.key, q.round, q.part, r.custom_id FROM batch_requests q"
            " JOIN batch_parts p ON p.stage = q.stage AND p.round = q.round AND p.part = q.part"
            " LEFT JOIN batch_results r ON r.custom_id = q.custom_id"
            " WHERE q.key = ? AND q.stage = ? AND p.status != 'abandoned'"
            " ORDER BY q.round DESC LIMIT 1", (key, self.stage)).fetchone()
        return Issue(*row[:4]) if row and row[4] is None else None

    def issue(self, cid: str) -> Issue | None:
        row = self._db.execute("SELECT custom_id, key, round, part FROM batch_requests"
                               " WHERE custom_id = ?", (cid,)).fetchone()
        return Issue(*row) if row else None

    # ------------------------------------------------------------------ results

    def results(self, key: str) -> list[ResultLine]:
        """Every result read back for ``key``, oldest issue first (superseded failures left
        out)."""
        rows = self._db.execute(
            "SELECT custom_id, status, body, code FROM batch_results WHERE key = ? AND"
            f" code IS NOT '{SUPERSEDED}' ORDER BY round, created_at", (key,))
        return [ResultLine(*r) for r in rows]

    def has_results(self, key: str) -> bool:
        return self._db.execute(
            f"SELECT 1 FROM batch_results WHERE key = ? AND code IS NOT '{SUPERSEDED}' LIMIT 1",
            (key,)).fetchone() is not None

    def supersede_failures(self) -> int:
        """Failed lines of this stage stop counting (``--retry-unscored``): the calls they
        failed are sent again. They stay as the answer to their issue, so that issue is not
        awaited as missing."""
        return self._db.execute(
            f"UPDATE batch_results SET code = '{SUPERSEDED}' WHERE (code IS NOT NULL OR"
            " status < 200 OR status >= 300) AND custom_id IN (SELECT custom_id FROM"
            " batch_requests WHERE stage = ?)", (self.stage,)).rowcount

    def add_results(self, lines: Iterable[ResultLine], source: str, *,
                    finish: tuple[Part, dict[str, Any]] | None = None) -> tuple[int, list[str]]:
        """Keep result lines (a line already read is ignored: ingesting a file twice is
        harmless). Returns (lines new to the book, custom ids that name no request of this
        run). ``finish``: mark that part ingested, with these fields, in the same
        transaction."""
        added = 0
        unknown: list[str] = []
        now = time.time()
        with self._tx() as db:
            for line in lines:
                issued = db.execute("SELECT key, round FROM batch_requests WHERE custom_id = ?",
                                    (line.custom_id,)).fetchone()
                if issued is None:
                    unknown.append(line.custom_id)
                    continue
                added += db.execute(
                    "INSERT OR IGNORE INTO batch_results (custom_id, key, round, status, body,"
                    " code, source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (line.custom_id, issued[0], issued[1], line.status, line.body, line.code,
                     source, now)).rowcount
            if finish is not None:
                part, fields = finish
                self.update_part(part, status="ingested", **fields)
        return added, unknown

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
                         " SET value = excluded.value", (key, json.dumps(value)))


def stages_with_batches(run_dir: str | Path) -> list[str]:
    """The stages of a run directory that have sent batch rounds."""
    book = BatchBook(run_dir, "")
    try:
        return [r[0] for r in book._db.execute("SELECT DISTINCT stage FROM batch_parts")]
    finally:
        book.close()
