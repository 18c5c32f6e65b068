"""``longreward mix``: long-context pairs plus short-context preference data.

The paper (LongReward §4.1) trains DPO on its long-context pairs mixed with short-context
preference data, so the model keeps its short-context preferences while learning long-context
ones. This module does only the mixing:

- ``ratio`` is the number of short pairs per long pair (``0.5`` = one short pair for every two
  long ones). Short pairs are drawn without replacement; if the short set is too small, all of
  it is used and the shortfall is reported, never made up by repetition.
- Both sides are read with ``formats.pair_from_row`` (any supported format, detected per row)
  and written in one output format, so a mixed file is as loadable as an unmixed one.
- ``provenance`` (``"long"``/``"short"``) and ``provenance_source`` (file or dataset name) are
  added to every row; a row that already has a ``provenance`` (a mix of a mix) keeps it.
- Shuffling uses ``random.Random(seed)``: the same inputs and seed give the same file.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputFileError, MissingDependencyError, RecordError, UsageError
from ..io.files import iter_rows, write_parquet_rows, write_rows
from .formats import PairFormat, PairKeys, detect_pair_format, pair_from_row, pair_to_row

__all__ = ["MixSummary", "iter_pair_source", "mix_pairs"]


@dataclass
class MixSummary:
    long: int = 0
    short_available: int = 0
    short_used: int = 0
    shortfall: int = 0  # short pairs the ratio asked for but the short set did not have
    total: int = 0
    format: str = ""
    errors: list[RecordError] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "long": self.long,
            "short_available": self.short_available,
            "short_used": self.short_used,
            "shortfall": self.shortfall,
            "total": self.total,
            "format": self.format,
            "rejected_records": len(self.errors),
            "outputs": self.outputs,
        }


_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".ndjson")


def _is_local_file(source: str) -> bool:
    p = Path(source)
    return p.is_file() and p.suffix.lower() in _FILE_SUFFIXES


def iter_pair_source(
    source: str | Path, *, split: str = "train", name: str | None = None
) -> Iterator[tuple[str, dict[str, Any] | RecordError]]:
    """Rows of a local file (JSONL/JSON/Parquet), a ``save_to_disk`` directory, or a Hugging
    Face dataset (name or local dataset directory) through ``datasets``."""
    source = str(source)
    if _is_local_file(source):
        yield from iter_rows(source)
        return
    if Path(source).suffix.lower() in _FILE_SUFFIXES:
        # A misspelt file name would otherwise be looked up on the Hub, and fail there with a
        # network error that never mentions the file.
        raise InputFileError(f"{source}: no such file")
    try:
        import datasets
    except ImportError as exc:
        raise MissingDependencyError(f"reading {source!r} as a Hugging Face dataset", "datasets", "hub") from exc
    path = Path(source)
    saved = ("state.json", "dataset_dict.json")  # written by Dataset(Dict).save_to_disk
    if path.is_dir() and any((path / f).exists() for f in saved):
        ds = datasets.load_from_disk(source)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
    else:
        try:
            ds = datasets.load_dataset(source, name, split=split)
        except Exception as exc:  # noqa: BLE001 - datasets raises many kinds; all mean "cannot load"
            raise InputFileError(
                f"cannot load {source!r} as a Hugging Face dataset ({type(exc).__name__}: {exc}). "
                "Give a JSONL/JSON/Parquet file, a save_to_disk directory, or a Hub dataset name "
                "(with --short-split/--short-config) that is reachable or cached"
            ) from exc
    for i, row in enumerate(ds):
        yield f"{Path(source).name}[{i}]", row


def _read_side(
    source: str | Path,
    side: str,
    keys: PairKeys,
    summary: MixSummary,
    *,
    split: str = "train",
    name: str | None = None,
) -> tuple[list[tuple[Any, str]], PairFormat | None]:
    out: list[tuple[Any, str]] = []
    fmt: PairFormat | None = None
    for label, item in iter_pair_source(source, split=split, name=name):
        if isinstance(item, RecordError):
            summary.errors.append(item)
            continue
        try:
            pair = pair_from_row(item, "auto", keys, record=f"{side} {label}")
        except RecordError as exc:
            summary.errors.append(exc)
            continue
        if fmt is None:
            fmt = detect_pair_format(item, keys)
        out.append((pair, label))
    return out, fmt


def mix_pairs(
    long_path: str | Path,
    short_source: str | Path,
    output_path: str | Path,
    *,
    ratio: float = 1.0,
    seed: int = 0,
    fmt: PairFormat | None = None,
    keys: PairKeys | None = None,
    short_split: str = "train",
    short_name: str | None = None,
    write_parquet: bool = True,
) -> MixSummary:
    """Mix ``long_path`` pairs with ``ratio`` short pairs per long pair into ``output_path``
    (JSONL, plus Parquet beside it). ``fmt`` defaults to the long file's format."""
    if ratio < 0:
        raise UsageError("--ratio must be ≥ 0 (short pairs per long pair)")
    keys = keys or PairKeys()
    summary = MixSummary()
    long_pairs, long_fmt = _read_side(long_path, "long", keys, summary)
    short_pairs, _ = _read_side(short_source, "short", keys, summary, split=short_split, name=short_name)
    summary.long = len(long_pairs)
    summary.short_available = len(short_pairs)
    rng = random.Random(seed)
    want = round(ratio * len(long_pairs))
    take = min(want, len(short_pairs))
    summary.shortfall = want - take
    chosen_short = rng.sample(short_pairs, take) if take else []
    summary.short_used = take
    out_fmt: PairFormat = fmt or long_fmt or "trl"
    summary.format = out_fmt

    tagged: list[Any] = []
    for side, source, items in (
        ("long", str(long_path), long_pairs),
        ("short", str(short_source), chosen_short),
    ):
        for pair, _label in items:
            # An input that is itself a mix keeps its own provenance.
            pair.meta.setdefault("provenance", side)
            pair.meta.setdefault("provenance_source", source)
            tagged.append(pair)
    rng.shuffle(tagged)
    rows = [pair_to_row(p, out_fmt, keys) for p in tagged]
    # Long pairs carry score columns, short ones other columns: every row gets every column
    # (null where absent) so JSONL and Parquet share one schema.
    columns: dict[str, None] = {}
    for r in rows:
        for k in r:
            columns.setdefault(k, None)
    rows = [{k: r.get(k) for k in columns} for r in rows]
    summary.total = len(rows)
    output_path = Path(output_path)
    jsonl = output_path.with_suffix(".jsonl")
    write_rows(jsonl, rows)
    summary.outputs.append(str(jsonl))
    if write_parquet or output_path.suffix.lower() == ".parquet":
        pq_path = output_path.with_suffix(".parquet")
        write_parquet_rows(pq_path, rows)
        summary.outputs.append(str(pq_path))
    return summary
