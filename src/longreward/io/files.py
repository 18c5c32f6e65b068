"""Reading input rows and writing output rows, for every stage.

Input: JSONL, JSON (a list, or an object with a list under ``data``/``rows``) and Parquet.
A bad row never stops a run: it comes out as a ``RecordError`` naming the record (line
number or row index, plus the id when one can be read) so the caller reports it and goes on.
That includes rows no careful reader should guess at: a key given twice in one object, and
nesting deeper than ``MAX_DEPTH`` (which would otherwise end the whole run in a
``RecursionError``). A pipe is read to its end, with a notice that it waits for its writer.

Output: ``check_output`` refuses, before any work, an output that cannot be written (a
directory, an input of the stage, a folder that cannot be made).

``ResumableJsonlWriter`` appends one line per finished item and flushes it at once.
Reopened after a crash it drops a torn last line and knows which ids are already written,
so a rerun writes no duplicate row.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InputFileError, RecordError, UsageError

Row = dict[str, Any]


#: deepest nesting of arrays/objects a record may have. Real records nest a few levels; a
#: line of 100k ``[`` is an attack on the parser (a RecursionError would stop the whole run),
#: and anything past this depth would also break writing the row back out.
MAX_DEPTH = 100

logger = logging.getLogger("longreward.io")
_SURROGATE = re.compile("[\ud800-\udfff]")


def iter_rows(path: str | Path, *, id_field: str = "id") -> Iterator[tuple[str, Row | RecordError]]:
    """Yield ``(record_label, row_or_error)`` for each record of ``path``."""
    path = Path(path)
    _check_readable(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _iter_parquet(path, id_field)
    elif suffix == ".json":
        yield from _iter_json(path, id_field)
    else:  # .jsonl, .ndjson, or anything else line-delimited
        yield from _iter_jsonl(path, id_field)


def _check_readable(path: Path) -> None:
    """Refuse what cannot be read as a file of records; say so when reading will wait. A
    pipe (``<(zcat data.jsonl.gz)``, ``/dev/stdin``) is read to its end, once: opening one
    that has no writer blocks until a program opens it for writing, which would otherwise
    look like a hung run."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputFileError(f"{path} does not exist") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise InputFileError(f"{path} is a directory; give the file of records inside it")
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        logger.warning("%s is a pipe or a terminal, not a file: reading it until its writer "
                       "closes it (it waits while nothing writes to it; Ctrl-C stops)", path)
    elif not stat.S_ISREG(mode):
        raise InputFileError(f"{path} is not a regular file (a socket or a block device); "
                             "give a file of records")


_BOM = b"\xef\xbb\xbf"


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of two equal keys without a word; which one a producer meant is
    # unknowable (other readers keep the first), so the record is rejected instead.
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def parse_json(text: str | bytes, label: str) -> Any:
    """One JSON value, or a ``RecordError`` naming ``label`` for malformed JSON, a key given
    twice in one object, or nesting deeper than ``MAX_DEPTH``."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise RecordError(label, exc.key, f"the key {exc.key!r} appears twice in one object; "
                          "JSON readers disagree on which value counts, so remove one") from None
    except json.JSONDecodeError as exc:
        raise RecordError(label, None, f"malformed JSON ({exc.msg} at line {exc.lineno} "
                          f"column {exc.colno})" if exc.lineno > 1 else
                          f"malformed JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise RecordError(label, None, _TOO_DEEP) from None


_TOO_DEEP = (f"nested more than {MAX_DEPTH} levels deep (arrays or objects inside each "
             "other); no record needs that, so it is not read")


def _label(base: str, row: Any, id_field: str) -> str:
    if isinstance(row, dict) and isinstance(row.get(id_field), (str, int)):
        return f"{base} (id {row[id_field]!s})"
    return base


def _checked(base: str, row: Any, id_field: str) -> tuple[str, Row | RecordError]:
    label = _label(base, row, id_field)
    if not isinstance(row, dict):
        return label, RecordError(label, None, f"expected a JSON object, got {type(row).__name__}")
    problem = _scan(row)
    if problem is not None:
        field, reason = problem
        return label, RecordError(label, field, reason)
    return label, row


def _scan(row: Row) -> tuple[str | None, str] | None:
    """The first reason a parsed record cannot be kept, as (top-level field, reason): nesting
    deeper than ``MAX_DEPTH``, or an unpaired surrogate in a string or key. Iterative, so a
    deep record cannot exhaust the stack here either."""
    stack: list[tuple[Any, str | None, int]] = [(row, None, 1)]
    while stack:
        value, field, depth = stack.pop()
        if isinstance(value, str):
            bad = _SURROGATE.search(value)
            if bad is not None:
                # json.loads accepts "\ud83d" (half of an emoji's escape pair) but no UTF-8
                # writer does: left in, it crashes the output write of this row on every rerun.
                return field, (f"contains an unpaired surrogate escape (\\u{ord(bad.group()):04x}), "
                               "which is not valid Unicode; write the whole escape pair, or the "
                               "character itself")
            continue
        if isinstance(value, dict):
            items: Iterable[tuple[Any, Any]] = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            continue
        if depth > MAX_DEPTH:
            return field, _TOO_DEEP
        for key, item in items:
            where = field if field is not None else str(key)
            if isinstance(key, str):
                stack.append((key, where, depth))
            stack.append((item, where, depth + 1))
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
                row = parse_json(text.rstrip("\r\n"), base)
            except RecordError as exc:
                yield base, exc
                continue
            yield _checked(base, row, id_field)


def _iter_json(path: Path, id_field: str) -> Iterator[tuple[str, Row | RecordError]]:
    try:
        # -sig: a leading BOM is dropped
        data = parse_json(path.read_bytes().decode("utf-8-sig"), path.name)
    except (UnicodeDecodeError, RecordError) as exc:
        # A single JSON document is all-or-nothing; say so and point at JSONL.
        why = exc.reason if isinstance(exc, RecordError) else str(exc)
        yield path.name, RecordError(path.name, getattr(exc, "field", None),
                                     f"cannot read JSON file ({why}); use JSONL to isolate "
                                     "bad records")
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



def dumps(value: Any) -> str:
    """One JSON text for the output files and the run store. Model replies can carry an
    unpaired surrogate (a server that split an emoji's escape pair); no UTF-8 file or SQLite
    text can hold one, so it becomes U+FFFD here instead of crashing the write of a finished
    row on every rerun."""
    text = json.dumps(value, ensure_ascii=False)
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def read_rows_by_id(path: str | Path, ids: Iterable[str], *, key: str = "id") -> list[Row]:
    """The rows of a JSONL output whose ``key`` is one of ``ids`` (first of each)."""
    wanted = set(ids)
    out: list[Row] = []
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(row, dict) and key in row and str(row[key]) in wanted:
                wanted.discard(str(row[key]))
                out.append(row)
    return out


def read_rows(path: str | Path, *, id_field: str = "id") -> tuple[list[Row], list[RecordError]]:
    """All good rows and all errors of a file (for small inputs such as pair files)."""
    rows: list[Row] = []
    errors: list[RecordError] = []
    for _, item in iter_rows(path, id_field=id_field):
        (errors if isinstance(item, RecordError) else rows).append(item)  # type: ignore[arg-type]
    return rows, errors


def check_output(output: str | Path, *, inputs: Iterable[str | Path | None] = (),
                 extra: Iterable[str | Path] = (), run_dir: str | Path | None = None) -> None:
    """Refuse, before any work, an output that cannot be written: a directory, a path whose
    folder cannot be created or written, or a file the stage reads (writing there would
    destroy the input it is reading). ``extra`` are the other files the stage writes beside
    ``output``; ``run_dir`` is its run directory. Raises ``UsageError`` with the fix."""
    inputs = [Path(p) for p in inputs if p is not None]
    for path in (Path(output), *map(Path, extra)):
        if path.is_dir():
            raise UsageError(f"the output {path} is a directory; give a file name, e.g. "
                             f"{path / ('out' + (Path(output).suffix or '.jsonl'))}")
        if path.exists() and not path.is_file():
            raise UsageError(f"the output {path} is not a regular file (a pipe or a device); "
                             "give a file name: the output is reopened to resume")
        for source in inputs:
            if _same_file(path, source):
                raise UsageError(f"the output {path} is the input {source}: writing it would "
                                 "destroy the records being read; give another output file")
        _check_folder(path.parent, f"the output {path}")
        if path.parent.is_dir():
            _try_write(path, f"the output {path}")
    if run_dir is not None:
        run = Path(run_dir)
        if run.exists() and not run.is_dir():
            raise UsageError(f"the run directory {run} is a file; give a directory (it holds "
                             "the run's SQLite store)")
        _check_folder(run, f"the run directory {run}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _check_folder(folder: Path, what: str) -> None:
    """``folder`` exists, or can be created: its nearest existing ancestor is a folder that
    can be written in. Nothing is created here, so a run refused later leaves no trace."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise UsageError(f"cannot create {what}: {_first_file(folder)} is a file, not a "
                         "folder")
    _try_write(existing / f".longreward-write-check-{os.getpid()}",
               what if existing == folder else f"{what} (its folder would be made in {existing})")


def _try_write(path: Path, what: str) -> None:
    """Open ``path`` for appending (removing it again if this made it): the one test that
    permissions, read-only file systems and quotas all answer truthfully."""
    existed = path.exists()
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write {what}: {exc.strerror or exc}") from None
    if not existed:
        path.unlink(missing_ok=True)


def _first_file(folder: Path) -> Path:
    """The first part of ``folder``'s path that exists and is not a folder."""
    for part in reversed([folder, *folder.parents]):
        if part.exists() and not part.is_dir():
            return part
    return folder


def default_run_dir(output_path: str | Path) -> Path:
    """Where a stage keeps its run store when no run directory is given: ``OUTPUT.run/``."""
    p = Path(output_path)
    return p.with_name(p.name + ".run")


def runs_manifest_path(output_path: str | Path) -> Path:
    """``OUTPUT.runs.json``: the run directories that wrote into OUTPUT, when one of them is
    not the default ``OUTPUT.run/`` (so ``pairs OUTPUT`` finds the documents they keep)."""
    p = Path(output_path)
    return p.with_name(p.name + ".runs.json")


def note_run_dir(output_path: str | Path, run_dir: str | Path) -> None:
    """Record that ``run_dir`` wrote into ``output_path``, unless it is a place looked in
    anyway (``OUTPUT.run/``, the output's folder). Paths are kept relative to the output's
    folder where possible, so the two can move together."""
    output_path = Path(output_path)
    run = Path(run_dir)
    listed = _listed_run_dirs(output_path)
    if _is_implied(run, output_path) or any(_same_place(run, d) for d in listed):
        return
    folder = output_path.parent.resolve()
    names = []
    for d in [*listed, run]:
        try:
            names.append(os.path.relpath(d.resolve(), folder))
        except ValueError:  # another drive (Windows)
            names.append(str(d.resolve()))
    manifest = runs_manifest_path(output_path)
    manifest.parent.mkdir(parents=True, exist_ok=True)  # the output's folder may be new
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps({"run_dirs": names}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, manifest)


def run_dirs_of(output_path: str | Path) -> list[Path]:
    """The folders that may hold the run store of ``output_path``: ``OUTPUT.run/``, the
    output's own folder, and the run directories its manifest lists; those that exist."""
    output_path = Path(output_path)
    found = [default_run_dir(output_path), output_path.parent]
    found += [d for d in _listed_run_dirs(output_path)
              if not any(_same_place(d, f) for f in found)]
    return [d for d in found if d.is_dir()]


def _listed_run_dirs(output_path: Path) -> list[Path]:
    manifest = runs_manifest_path(output_path)
    if not manifest.is_file():
        return []
    try:
        names = json.loads(manifest.read_text(encoding="utf-8")).get("run_dirs", [])
    except (ValueError, AttributeError, OSError):
        return []  # a damaged manifest: the implied places are still looked in
    return [output_path.parent / n for n in names if isinstance(n, str)]


def _same_place(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _is_implied(run_dir: Path, output_path: Path) -> bool:
    """Run directories looked in without a manifest: ``OUTPUT.run/``, and the output's own
    folder (``longreward run`` keeps its outputs inside its run directory)."""
    return any(_same_place(run_dir, d) for d in (default_run_dir(output_path),
                                                 output_path.parent))


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
    """Append-only JSONL output keyed by ``key``; safe to reopen after ``kill -9``.

    ``digest(row)``, when given, is kept per written id in ``digests`` (e.g. a hash of the
    inputs the row was made from), so the caller can tell which rows came from what."""

    def __init__(self, path: str | Path, *, key: str = "id",
                 digest: Callable[[Row], str] | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.written: set[str] = set()
        self.digests: dict[str, str] = {}
        self._digest = digest
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
                    if item_id not in self.written and self._digest is not None:
                        self.digests[item_id] = self._digest(row)
                    self.written.add(item_id)
        if good_end != self.path.stat().st_size:
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
        if duplicates:
            # Two writers on one output (before runs took a lock) left rows twice: keep the
            # first of each id, so a rerun repairs the file instead of carrying the damage.
            self._rewrite(lambda item_id, seen: item_id not in seen)
        self.duplicates_removed = duplicates

    def _rewrite(self, keep: Callable[[str, set[str]], bool]) -> None:
        """Rewrite the file with the rows ``keep(id, ids_kept_so_far)`` accepts (rows
        without the key are always kept)."""
        seen: set[str] = set()
        kept = []
        for line in self.path.read_bytes().splitlines(keepends=True):
            row = json.loads(line)
            if not isinstance(row, dict) or self.key not in row:
                kept.append(line)
                continue
            item_id = str(row[self.key])
            if keep(item_id, seen):
                kept.append(line)
                seen.add(item_id)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(b"".join(kept))
        os.replace(tmp, self.path)

    def remove(self, ids: Iterable[str]) -> None:
        """Take the rows of ``ids`` out of the file (they are to be made again); every other
        row stays as it is."""
        gone = set(ids) & self.written
        if not gone:
            return
        self._fh.close()
        self._rewrite(lambda item_id, _seen: item_id not in gone)
        self.written -= gone
        for item_id in gone:
            self.digests.pop(item_id, None)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

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
        if self._digest is not None:
            self.digests[item_id] = self._digest(row)
        return True

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResumableJsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
