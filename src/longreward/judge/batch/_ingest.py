"""File mode, the way back: read result files written by any executor (``vllm run-batch``,
a Ray Data pipeline, a provider's console), in any order and from anywhere, into the run's
batch book, and say per shard what is answered, failed and still missing.

A line is matched to its request by ``custom_id`` alone; a line read twice is kept once, a
line naming no request of this run is counted and reported, and an unreadable line is named
by file and line number. Nothing here runs the stage: ``longreward batch ingest`` does that
next, and the stage either writes its next round or its final output.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ._book import BatchBook, stages_with_batches
from ._lines import ResultLine, read_result_text, result_files

#: result lines are stored this many at a time (one transaction each)
CHUNK = 5_000


@dataclass
class ShardState:
    stage: str
    round: int
    name: str
    requests: int
    answered: int
    failed: int

    @property
    def missing(self) -> int:
        return self.requests - self.answered


@dataclass
class IngestReport:
    files: list[str] = field(default_factory=list)
    lines: int = 0
    new: int = 0
    unknown: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    shards: list[ShardState] = field(default_factory=list)

    @property
    def repeated(self) -> int:
        """Lines read before (ingesting a file twice is harmless)."""
        return self.lines - self.new - len(self.unknown)

    @property
    def stages(self) -> list[str]:
        return sorted({s.stage for s in self.shards})

    def missing(self) -> int:
        return sum(s.missing for s in self.shards)


def ingest_results(run_dir: str | Path, paths: Iterable[str | Path]) -> IngestReport:
    """Read result files (or directories of them) into ``run_dir``'s batch book."""
    report = IngestReport()
    book = BatchBook(run_dir, "")
    try:
        for path in result_files(paths):
            report.files.append(str(path))
            chunk: list[ResultLine] = []
            text = path.read_text(encoding="utf-8-sig", errors="replace")
            for item in read_result_text(text, str(path)):
                if isinstance(item, str):
                    report.unreadable.append(item)
                    continue
                report.lines += 1
                chunk.append(item)
                if len(chunk) >= CHUNK:
                    _keep(book, chunk, str(path), report)
            _keep(book, chunk, str(path), report)
    finally:
        book.close()
    report.shards = shard_states(run_dir)
    return report


def _keep(book: BatchBook, chunk: list[ResultLine], source: str, report: IngestReport) -> None:
    if chunk:
        added, unknown = book.add_results(chunk, source)
        report.new += added
        report.unknown += unknown
        chunk.clear()


def shard_states(run_dir: str | Path) -> list[ShardState]:
    """Every part of every batch round of ``run_dir``: requests, answered, failed."""
    out = []
    for stage in stages_with_batches(run_dir):
        book = BatchBook(run_dir, stage)
        try:
            for part in book.parts():
                if part.status == "abandoned":
                    continue
                answered, failed = book.answered(part)
                out.append(ShardState(stage, part.round, part.batch_id or part.name,
                                      part.n_requests, answered, failed))
        finally:
            book.close()
    return out
