"""The one resumable stage runner behind ``sample``, ``score`` (and so ``run``).

A stage turns *units* (a prompt) into output *rows* (its answers, or their scores). What a
stage does to one unit is a plain async function with no file or store handling; everything
that makes it resumable lives here, once:

1. take the run directory's lock (a second process stops at once, naming the holder);
2. open the run store;
3. refuse to resume from results made with other output-deciding settings;
4. forget rows to redo: all of them (``redo="all"``), the ones a predicate picks
   (``redo="unscored"``), and *stale* ones, whose input (document, question, answer) has
   changed since they were made;
5. repair the output: drop a torn last line and rows written twice, add rows the store has
   but the file lacks (a kill between the two writes), and take out the rows to redo. Rows
   another run directory wrote there are kept: as done, when made from the same input; an
   item whose row was made from another input is rejected, naming the conflict;
6. build the to-do list from what is not finished;
7. run the units with bounded concurrency, committing each row to the store, then the output.

A unit that raises ``RecordError`` is a rejected record (named, listed beside the output);
the rest go on. Any other exception stops the stage: rows committed so far are kept, and a
rerun goes on from them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import RecordError
from ..io.files import (
    ResumableJsonlWriter,
    default_run_dir,
    note_run_dir,
    read_rows_by_id,
    write_rejected,
)
from ..store import OutputLock, RunLock, RunStore, check_stage_settings

Row = dict[str, Any]
Redo = Literal["none", "unscored", "all"]
#: ``commit(row)`` keeps a finished row: in the store first, then in the output
Commit = Callable[[Row], None]


def fingerprint(*parts: Any) -> str:
    """A short hash of a row's inputs: a finished row whose inputs hash differently now is
    stale and is made again."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:24]


@dataclass
class Unit:
    """One unit of work: ``items`` maps each output row id it yields to the fingerprint of
    that row's inputs; ``payload`` is what the stage's work function needs."""

    key: str
    items: dict[str, str]
    payload: Any


@dataclass
class StageSpec:
    """What the runner needs to know about a stage."""

    name: str
    #: the options that decide a row (not where or how fast it is made)
    settings: dict[str, Any]
    #: the fingerprint a finished row was made from (compared with ``Unit.items``)
    row_fingerprint: Callable[[Row], str]
    #: with ``redo="unscored"``: which finished rows to make again
    redo_predicate: Callable[[Row], bool] | None = None


@dataclass
class StageOutcome:
    """What the runner did; stages put their own counters beside it."""

    items_total: int = 0
    items_done_before: int = 0
    units_total: int = 0
    #: units all of whose items were finished before this run
    units_done_before: int = 0
    #: finished rows whose input changed since: made again
    stale: list[str] = field(default_factory=list)
    rejected: list[RecordError] = field(default_factory=list)
    interrupted: bool = False
    duplicates_removed: int = 0
    #: items whose row another run directory had already written into the output, from
    #: the same input: kept and counted as done, not made again
    kept_from_elsewhere: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return len(self.stale)


def stage_run_dir(output_path: str | Path, run_dir: str | Path | None) -> Path:
    return Path(run_dir) if run_dir is not None else default_run_dir(output_path)


async def run_stage(
    spec: StageSpec,
    units: Iterable[Unit],
    work: Callable[[Unit, list[str], Commit], Awaitable[None]],
    *,
    output_path: str | Path,
    run_dir: str | Path | None = None,
    concurrency: int = 8,
    redo: Redo = "none",
    rejected: list[RecordError] | None = None,
    outcome: StageOutcome | None = None,
    on_open: Callable[[RunStore], None] | None = None,
    on_start: Callable[[StageOutcome], None] | None = None,
    on_row: Callable[[Row, bool], None] | None = None,
    on_unit_done: Callable[[Unit], None] | None = None,
    supervise: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None,
) -> StageOutcome:
    """Run ``work(unit, left_item_ids, commit)`` for every unit with unfinished items.

    ``rejected`` are the records the stage's reader already rejected; they are listed beside
    the output with the ones rejected while running. ``outcome`` is the stage's own summary
    (a ``StageOutcome`` subclass) to fill in; by default a plain one. ``on_open(store)`` runs
    once the store is open and checked (e.g. to attach it as the call cache);
    ``on_start(outcome)`` once the to-do list is known (totals and what was done before).
    ``on_row(row, resumed)`` sees every row of this run's units: the finished ones from
    earlier runs (``resumed``) and the new ones. ``supervise(units)`` awaits the units' work
    for the caller, e.g. the batch round driver, which sends the calls they park as rounds of
    batch requests.

    An output may hold rows this run directory did not make (another ``--run-dir`` wrote
    there, or the run directory was deleted). They are never dropped silently: rows of other
    items stay as they are; a row of one of this run's items counts as done when it was made
    from the same input, and the item is rejected, naming the conflict, when it was made from
    another one (one output holds one row per id). ``redo="all"`` makes those items again.
    """
    if redo not in ("none", "unscored", "all"):
        raise ValueError(f"redo must be none, unscored or all, not {redo!r}")
    out = outcome if outcome is not None else StageOutcome()
    out.rejected = list(rejected or [])
    units = list(units)
    directory = stage_run_dir(output_path, run_dir)
    output_path = Path(output_path)
    with RunLock(directory), OutputLock(output_path), RunStore(directory) as store:
        made = store.finished_ids(spec.name)  # before a restart forgets them
        if redo == "all":
            store.forget(spec.name)
        check_stage_settings(store, spec.name, spec.settings, where=str(directory))
        current = {item: fp for u in units for item, fp in u.items.items()}
        forget: list[str] = []
        for row in store.rows(spec.name):
            item = str(row.get("id"))
            if item not in current:
                continue
            if spec.row_fingerprint(row) != current[item]:
                out.stale.append(item)  # made from an input edited since: made again
                forget.append(item)
            elif redo == "unscored" and spec.redo_predicate and spec.redo_predicate(row):
                forget.append(item)
        if forget:
            store.forget(spec.name, forget)
        if on_open is not None:
            on_open(store)
        note_run_dir(output_path, directory)

        with ResumableJsonlWriter(output_path, digest=spec.row_fingerprint) as writer:
            out.duplicates_removed = writer.duplicates_removed
            finished = store.finished_ids(spec.name)
            # Rows this store did not make: another run directory wrote them.
            foreign = {i: fp for i, fp in writer.digests.items() if i not in made}
            conflicts = {i for i, fp in foreign.items()
                         if i in current and fp != current[i] and redo != "all"}
            adopted = {i for i in foreign if i in current and i not in conflicts
                       and redo != "all"}
            # The output keeps every row still finished and every row of other items;
            # redone ones follow.
            writer.remove({*forget, *(made if redo == "all" else ()),
                           *(i for i in foreign if i in current and redo == "all")})
            for row in store.rows(spec.name):  # repair: committed but not yet in the file
                writer.write(row)
                if on_row is not None and str(row.get("id")) in current:
                    on_row(row, True)
            if adopted and on_row is not None:
                for row in read_rows_by_id(output_path, adopted):
                    on_row(row, True)
            out.kept_from_elsewhere = sorted(adopted)
            todo: list[tuple[Unit, list[str]]] = []
            for unit in units:
                refused = [i for i in unit.items if i in conflicts]
                out.rejected += [_conflict(i, unit, output_path, directory) for i in refused]
                done = [i for i in unit.items if i in finished or i in adopted]
                left = [i for i in unit.items if i not in done and i not in conflicts]
                out.items_total += len(unit.items)
                out.items_done_before += len(done)
                out.units_total += 1
                if left:
                    todo.append((unit, left))
                elif not refused:
                    out.units_done_before += 1
            write_rejected(output_path, out.rejected)
            if on_start is not None:
                on_start(out)

            def commit(row: Row) -> None:
                # Store first: a kill between the two writes is repaired from the store on
                # the next run; the other order would lose the row from the store's view.
                store.record(spec.name, str(row["id"]), row)
                writer.write(row)
                if on_row is not None:
                    on_row(row, False)

            sem = asyncio.Semaphore(max(1, concurrency))

            async def one(unit: Unit, left: list[str]) -> None:
                async with sem:
                    try:
                        await work(unit, left, commit)
                    except RecordError as exc:
                        out.rejected.append(exc)
                if on_unit_done is not None:
                    on_unit_done(unit)

            try:
                units_done = gather_or_cancel([one(u, left) for u, left in todo])
                await (units_done if supervise is None else supervise(units_done))
            except asyncio.CancelledError:
                out.interrupted = True
                raise
            finally:
                write_rejected(output_path, out.rejected)
    return out


def _conflict(item: str, unit: Unit, output: Path, run_dir: Path) -> RecordError:
    return RecordError(
        f"{item} (prompt {unit.key})", "id",
        f"{output.name} already holds a row for this id that another run directory made from "
        f"another input (answer, question or document); {run_dir} did not make it, and one "
        "output holds one row per id, so this one is not made: give it its own id, or write "
        "to another output", record_id=item)


async def gather_or_cancel(coros: list[Awaitable[Any]]) -> list[Any]:
    """``asyncio.gather`` that, when one task fails, cancels the others and waits for them
    before raising, so no unit still writes after the stage has closed its store."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    if not tasks:
        return []
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    if pending:
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    # Read every failure, not only the one raised: units that failed at the same moment
    # (e.g. all of them on a 401) would otherwise print "Task exception was never retrieved"
    # with a traceback after the run's one clear message.
    failures = [t.exception() for t in tasks if t.done() and not t.cancelled()]
    first = next((e for e in failures if e is not None), None)
    if first is not None:
        raise first
    return [t.result() for t in tasks]
