"""Reading input rows and writing output rows, for every stage.

Input: JSONL, JSON (a list, or an object with a list under ``data``/``rows``) and Parquet.
A bad row never stops a run: it comes out as a ``RecordError`` naming the record (line
number or row index, plus the id when one can be read) so the caller reports it and goes on.

Output: ``ResumableJsonlWriter`` appends one line per finished item and flushes it at once.
Reopened after a crash it drops a torn last line and knows which ids are already written,
so a rerun writes no duplicate row.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import RecordError

Row = dict[str, Any]


def iter_rows(path: str | Path, *, id_field: str = "id") -> Iterator[tuple[str, Row | RecordError]]:
    """Yield ``(record_label, row_or_error)`` for each record of ``path``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _iter_parquet(path, id_field)
    elif suffix == ".json":
        yield from _iter_json(path, id_field)
    else:  # .jsonl, .ndjson, or anything else line-delimited
        yield from _iter_jsonl(path, id_field)


_BOM = b"\xef\xbb\xbf"


def _label(base: str, row: Any, id_field: str) -> str:
    if isinstance(row, dict) and isinstance(row.get(id_field), (str, int)):
        return f"{base} (id {row[id_field]!s})"
    return base


def _checked(base: str, row: Any, id_field: str) -> tuple[str, Row | RecordError]:
    label = _label(base, row, id_field)
    if not isinstance(row, dict):
        return label, RecordError(label, None, f"expected a JSON object, got {type(row).__name__}")
    bad = _lone_surrogate(row)
    if bad is not None:
        # json.loads accepts "\ud83d" (half of an emoji's escape pair) but no UTF-8 writer
        # does: left in, it crashes the output write of this row on every rerun.
        field, char = bad
        return label, RecordError(label, field, f"contains an unpaired surrogate escape "
                                  f"(\\u{ord(char):04x}), which is not valid Unicode; write the "
                                  "whole escape pair, or the character itself")
    return label, row


def _lone_surrogate(value: Any, field: str | None = None) -> tuple[str | None, str] | None:
    """The (top-level field, character) of the first unpaired surrogate in ``value``."""
    if isinstance(value, str):
        for ch in value:
            if "\ud800" <= ch <= "\udfff":
                return field, ch
        return None
    if isinstance(value, dict):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _lone_surrogate(item, field if field is not None else str(key))
        if found is None and isinstance(key, str):
            found = _lone_surrogate(key, field if field is not None else key)
        if found is not None:
            return found
    return None


def _iter_jsonl(path: Path, id_field: str) -> Iterator[tuple[str, Row | RecordError]]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]  # editors on Windows write one; it is not part of the JSON
            if not raw.strip():
                continue
            base = f"{path.name}:{lineno}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield base, RecordError(base, None, f"not valid UTF-8 (byte {exc.start}); "
                                        "re-encode the file as UTF-8")
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                yield base, RecordError(base, None, f"malformed JSON ({exc.msg} at column "
                                        f"{exc.colno})")
                continue
            yield _checked(base, row, id_field)


def _iter_json(path: Path, id_field: str) -> Iterator[tuple[str, Row | RecordError]]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))  # -sig: a leading BOM is dropped
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        # A single JSON document is all-or-nothing; say so and point at JSONL.
        yield path.name, RecordError(path.name, None, f"cannot read JSON file ({exc}); "
                                     "use JSONL to isolate bad records")
        return
    if isinstance(data, dict):
        for key in ("data", "rows", "records"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            data = [data]
    if not isinstance(data, list):
        yield path.name, RecordError(path.name, None, "expected a list of objects")
        return
    for i, row in enumerate(data):
        yield _checked(f"{path.name}[{i}]", row, id_field)


def _iter_parquet(path: Path, id_field: str) -> Iterator[tuple[str, Row | RecordError]]:
    import pyarrow as pa
    import pyarrow.parquet as pq  # core dependency; imported here to keep CLI start fast

    i = 0
    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=256):
            for row in batch.to_pylist():
                yield _label(f"{path.name}[{i}]", row, id_field), row
                i += 1
    except (pa.ArrowException, OSError) as exc:
        # A 0-byte, truncated or non-Parquet file: the rows from here on cannot be read, so
        # the file is reported as one rejected record instead of a traceback.
        where = path.name if i == 0 else f"{path.name}[{i}:]"
        yield where, RecordError(where, None, f"cannot read Parquet ({exc}); check that the "
                                 "file is complete, or export it again")


_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(value: Any) -> str:
    """One JSON text for the output files and the run store. Model replies can carry an
    unpaired surrogate (a server that split an emoji's escape pair); no UTF-8 file or SQLite
    text can hold one, so it becomes U+FFFD here instead of crashing the write of a finished
    row on every rerun."""
    text = json.dumps(value, ensure_ascii=False)
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def read_rows(path: str | Path, *, id_field: str = "id") -> tuple[list[Row], list[RecordError]]:
    """All good rows and all errors of a file (for small inputs such as pair files)."""
    rows: list[Row] = []
    errors: list[RecordError] = []
    for _, item in iter_rows(path, id_field=id_field):
        (errors if isinstance(item, RecordError) else rows).append(item)  # type: ignore[arg-type]
    return rows, errors


def default_run_dir(output_path: str | Path) -> Path:
    """Where a stage keeps its run store when no run directory is given: ``OUTPUT.run/``."""
    p = Path(output_path)
    return p.with_name(p.name + ".run")


def rejected_path(output_path: str | Path) -> Path:
    """Rejected input records are listed in ``OUTPUT.rejected.jsonl``."""
    p = Path(output_path)
    return p.with_name(p.name + ".rejected.jsonl")


def write_rejected(output_path: str | Path, errors: list[RecordError]) -> None:
    """List rejected records beside the output (or remove a stale list), so nothing is lost
    without a trace."""
    path = rejected_path(output_path)
    if not errors:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for e in errors:
            fh.write(dumps({"record": e.record, "field": e.field, "error": e.reason}) + "\n")


def write_rows(path: str | Path, rows: Iterable[Row]) -> int:
    """Write rows to JSONL or Parquet (by suffix), replacing the file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    rows = list(rows)
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), tmp)
    else:
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(dumps(row) + "\n")
    os.replace(tmp, path)
    return len(rows)


def write_parquet_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Parquet needs one schema for all rows; ``write_rows`` infers it from the first row, so
    give every row every column (missing ones as null) first."""
    columns: dict[str, None] = {}
    for r in rows:
        for k in r:
            columns.setdefault(k, None)
    write_rows(path, [{k: r.get(k) for k in columns} for r in rows])


class ResumableJsonlWriter:
    """Append-only JSONL output keyed by ``key``; safe to reopen after ``kill -9``."""

    def __init__(self, path: str | Path, *, key: str = "id") -> None:
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.written: set[str] = set()
        self.duplicates_removed = 0
        self._repair_and_index()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _repair_and_index(self) -> None:
        if not self.path.exists():
            return
        good_end = 0
        duplicates = 0
        with open(self.path, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # torn write from a killed run: drop it, it is redone
                try:
                    row = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    break
                good_end += len(raw)
                if isinstance(row, dict) and self.key in row:
                    item_id = str(row[self.key])
                    duplicates += item_id in self.written
                    self.written.add(item_id)
        if good_end != self.path.stat().st_size:
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
        if duplicates:
            # Two writers on one output (before runs took a lock) left rows twice: keep the
            # first of each id, so a rerun repairs the file instead of carrying the damage.
            seen: set[str] = set()
            kept = []
            for line in self.path.read_bytes().splitlines(keepends=True):
                row = json.loads(line)
                item_id = str(row.get(self.key)) if isinstance(row, dict) else None
                if item_id is None or self.key not in row or item_id not in seen:
                    kept.append(line)
                    if item_id is not None:
                        seen.add(item_id)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_bytes(b"".join(kept))
            os.replace(tmp, self.path)
        self.duplicates_removed = duplicates

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.written

    def write(self, row: Row) -> bool:
        """Append ``row`` unless its key was already written. Returns whether it was written."""
        item_id = str(row[self.key])
        if item_id in self.written:
            return False
        self._fh.write(dumps(row) + "\n")
        self._fh.flush()
        self.written.add(item_id)
        return True

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResumableJsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
