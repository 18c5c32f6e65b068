"""Progress bars and summary tables for every stage (score, sample, pairs).

One place for the look of a run: done/total, rate, ETA, plus the model-call counters of the
stage's client (calls, tokens, failures, cost), refreshed from ``ModelClient.snapshot()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text


class _RateColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f}/s" if speed else "–/s", style="progress.data.speed")


def format_calls(snap: dict[str, Any] | None) -> str:
    if not snap:
        return ""
    tokens = snap.get("prompt_tokens", 0) + snap.get("completion_tokens", 0)
    parts = [f"calls {snap.get('requests', 0)}", f"cached {snap.get('cache_hits', 0)}",
             f"tok {tokens:,}", f"fail {snap.get('failures', 0) + snap.get('unscored', 0)}"]
    if snap.get("cost_usd") is not None:
        parts.append(f"${snap['cost_usd']:.4f}")
    return " · ".join(parts)


class StageProgress:
    def __init__(self, progress: Progress | None, task_id: Any,
                 stats: Callable[[], dict[str, Any]] | None) -> None:
        self._progress = progress
        self._task = task_id
        self._stats = stats

    def start(self, total: int, completed: int = 0) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=total, completed=completed)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n,
                                  calls=format_calls(self._stats() if self._stats else None))


@contextmanager
def stage_progress(description: str, *, console: Console | None = None, enabled: bool = True,
                   stats: Callable[[], dict[str, Any]] | None = None) -> Iterator[StageProgress]:
    if not enabled:
        yield StageProgress(None, None, stats)
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TaskProgressColumn(), _RateColumn(), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), TextColumn("{task.fields[calls]}"),
        console=console or Console(stderr=True), transient=False,
    )
    with progress:
        task = progress.add_task(description, total=None, calls="")
        yield StageProgress(progress, task, stats)


def summary_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, str(value))
    return table
