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


def _label(base: str, row: Any, id_field: str) -> str:
    if isinstance(row, dict) and isinstance(row.get(id_field), (str, int)):
        return f"{base} (id {row[id_field]!s})"
    return base


def _iter_jsonl(path: Path, id_field: str) -> Iterator[tuple[str, Row | RecordError]]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
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
            label = _label(base, row, id_field)
            if not isinstance(row, dict):
                yield label, RecordError(label, None, f"expected a JSON object, got "
                                         f"{type(row).__name__}")
                continue
            yield label, row


def _iter_json(path: Path, id_field: str) -> Iterator[tuple[str, Row | RecordError]]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
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
        label = _label(f"{path.name}[{i}]", row, id_field)
        if not isinstance(row, dict):
            yield label, RecordError(label, None, f"expected an object, got {type(row).__name__}")
        else:
            yield label, row


def _iter_parquet(path: Path, id_field: str) -> Iterator[tuple[str, Row | RecordError]]:
    import pyarrow.parquet as pq  # core dependency; imported here to keep CLI start fast

    pf = pq.ParquetFile(path)
    i = 0
    for batch in pf.iter_batches(batch_size=256):
        for row in batch.to_pylist():
            yield _label(f"{path.name}[{i}]", row, id_field), row
            i += 1


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
            fh.write(json.dumps({"record": e.record, "field": e.field, "error": e.reason},
                                ensure_ascii=False) + "\n")


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
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return len(rows)


class ResumableJsonlWriter:
    """Append-only JSONL output keyed by ``key``; safe to reopen after ``kill -9``."""

    def __init__(self, path: str | Path, *, key: str = "id") -> None:
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.written: set[str] = set()
        self._repair_and_index()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _repair_and_index(self) -> None:
        if not self.path.exists():
            return
        good_end = 0
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
                    self.written.add(str(row[self.key]))
        if good_end != self.path.stat().st_size:
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.written

    def write(self, row: Row) -> bool:
        """Append ``row`` unless its key was already written. Returns whether it was written."""
        item_id = str(row[self.key])
        if item_id in self.written:
            return False
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.written.add(item_id)
        return True

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResumableJsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
