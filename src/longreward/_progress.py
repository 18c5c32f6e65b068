"""Progress display and summary tables for every stage (score, sample, pairs).

One place for the look of a run: done/total, rate, ETA, plus the model-call counters of the
stage's client (calls, tokens, failures, cost) and its notices (an endpoint that does not
answer, a long ``Retry-After`` wait), read from ``ModelClient.snapshot()``.

- On a terminal: a live bar. The counters are read when the bar redraws, not only when an
  answer completes, so a dead judge shows up while nothing completes.
- Elsewhere (a log file, CI, ``nohup``): one plain line every ``every`` seconds (default 30,
  or ``$LONGREWARD_PROGRESS_EVERY``) and a last one at the end. A live bar written to a file
  shows nothing until the run ends.
"""

from __future__ import annotations

import os
import threading
import time
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

Stats = Callable[[], dict[str, Any]]

#: seconds between plain progress lines when output is not a terminal
DEFAULT_EVERY_S = 30.0


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


def format_notices(snap: dict[str, Any] | None) -> str:
    return " · ".join(snap.get("notices") or []) if snap else ""


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else (
        f"{secs}s")


class _CallsColumn(ProgressColumn):
    """The client's counters and notices, read at most once a second as the bar redraws."""

    def __init__(self, stats: Stats | None) -> None:
        super().__init__()
        self._stats = stats
        self._read_at = -1e9
        self._text = Text("")

    def render(self, task: Any) -> Text:
        now = time.monotonic()
        if self._stats is not None and now - self._read_at >= 1.0:
            self._read_at = now
            snap = self._stats()
            text = Text(format_calls(snap))
            notices = format_notices(snap)
            if notices:
                text.append(" · " + notices, style="bold yellow")
            self._text = text
        return self._text


class StageProgress:
    """What a stage calls: ``start(total, done)`` once the to-do list is known, ``advance()``
    per finished item."""

    def __init__(self, progress: Progress | None = None, task_id: Any = None,
                 stats: Stats | None = None) -> None:
        self._progress = progress
        self._task = task_id
        self._stats = stats

    def start(self, total: int, completed: int = 0) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=total, completed=completed)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n)


class PlainProgress(StageProgress):
    """Progress as plain lines, for output that is not a terminal."""

    def __init__(self, description: str, console: Console, stats: Stats | None,
                 every: float) -> None:
        super().__init__(stats=stats)
        self.description = description
        self.console = console
        self.every = every
        self.total: int | None = None
        self.completed = 0
        self._done_before = 0
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress-lines", daemon=True)

    def start(self, total: int, completed: int = 0) -> None:
        with self._lock:
            self.total, self.completed, self._done_before = total, completed, completed

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.completed += n

    def line(self) -> str:
        with self._lock:
            total, done, before = self.total, self.completed, self._done_before
        elapsed = time.monotonic() - self._t0
        parts = [f"{self.description}: {done}/{total if total is not None else '?'}"]
        if total:
            parts[0] += f" ({100 * done / total:.0f}%)"
        rate = (done - before) / elapsed if elapsed > 0 else 0.0
        parts.append(f"{rate:.2f}/s")
        parts.append(f"elapsed {format_duration(elapsed)}")
        if total and rate > 0 and done < total:
            parts.append(f"ETA {format_duration((total - done) / rate)}")
        snap = self._stats() if self._stats is not None else None
        for extra in (format_calls(snap), format_notices(snap)):
            if extra:
                parts.append(extra)
        return " · ".join(parts)

    def _print(self) -> None:
        self.console.print(self.line(), markup=False, highlight=False, soft_wrap=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._print()

    def __enter__(self) -> PlainProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._print()


def _every_default() -> float:
    value = os.environ.get("LONGREWARD_PROGRESS_EVERY")
    try:
        return max(0.05, float(value)) if value else DEFAULT_EVERY_S
    except ValueError:
        return DEFAULT_EVERY_S


@contextmanager
def stage_progress(description: str, *, console: Console | None = None, enabled: bool = True,
                   stats: Stats | None = None, every: float | None = None
                   ) -> Iterator[StageProgress]:
    """A live bar on a terminal, plain lines every ``every`` seconds elsewhere, nothing when
    not ``enabled``."""
    if not enabled:
        yield StageProgress(None, None, stats)
        return
    console = console or Console(stderr=True)
    if not console.is_terminal:
        with PlainProgress(description, console, stats,
                           every if every is not None else _every_default()) as plain:
            yield plain
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TaskProgressColumn(), _RateColumn(), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), _CallsColumn(stats),
        console=console, transient=False,
    )
    with progress:
        task = progress.add_task(description, total=None)
        yield StageProgress(progress, task, stats)


def summary_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, str(value))
    return table
