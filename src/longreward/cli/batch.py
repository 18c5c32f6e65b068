"""``--batch`` on ``score`` and ``sample``, and ``longreward batch ingest | status | cancel``.

Batch mode sends a stage's model calls as rounds of batch requests (``longreward.judge.batch``,
docs/batch.md). ``--batch openai`` runs every round through the Batch API from one command;
``--batch files`` writes each round as shards, stops, and ``batch ingest`` reads an
executor's results back and runs the stage on to its next round or its output.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from .._progress import summary_table
from ..errors import UsageError
from ._app import app
from ._common import err, key_values, option_values

#: exit code of a file-mode run that stopped to wait for an executor's results
EXIT_WAITING = 3

batch_app = typer.Typer(help="Batch mode: read an executor's results back, show or cancel a "
                             "run's batches (docs/batch.md).", no_args_is_help=True)
app.add_typer(batch_app, name="batch")

#: the help of the two flags ``score`` and ``sample`` take
BATCH_HELP = ("Send the model calls as rounds of batch requests: 'openai' (the Batch API at "
              "--base-url: about half the price, results within 24 h) or 'files' (shards "
              "RUN/rounds/N/part-XXXX.jsonl for vllm run-batch, Ray Data or any executor; "
              "then `longreward batch ingest`). See docs/batch.md.")
BATCH_OPTION_HELP = ("Batch setting KEY=VALUE (repeatable): poll_interval (s, default 30), "
                     "max_requests (per batch or shard, ≤50000), max_bytes (≤200 MB), reissues "
                     "(sends of a failed line, default 2), directory (file mode), "
                     "completion_window.")


def batch_options(mode: str | None, items: list[str] | None) -> Any:
    """``--batch MODE`` and its ``--batch-option`` flags as ``BatchOptions`` (None: online)."""
    from pydantic import ValidationError

    from ..judge.batch import BatchOptions

    settings = option_values(items, "--batch-option") or {}
    if mode is None:
        if settings:
            raise typer.BadParameter("--batch-option needs --batch openai or --batch files")
        return None
    try:
        return BatchOptions(mode=mode, **settings)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise typer.BadParameter("invalid batch options:\n" + "\n".join(lines)) from None


def invocation(stage: str, options: Any, batch: Any, **paths: Path | None) -> dict[str, Any]:
    """How to run a stage again (``batch ingest`` does, in file mode). Paths are absolute;
    header values are left out (they may hold secrets, and file mode sends no HTTP)."""
    data = options.model_dump(mode="json")
    section = data.get("judge") or data.get("policy") or {}
    section["extra_headers"] = {}
    return {"stage": stage, "options": data, "batch": batch.model_dump(mode="json"),
            **{k: str(v.resolve()) if v is not None else None for k, v in paths.items()}}


def report_pending(exc: Any, console: Console) -> int:
    """A file-mode stage stopped to wait for an executor: say what to run next."""
    console.print(f"[bold yellow]waiting for batch results[/]\n{escape(str(exc))}",
                  soft_wrap=True)
    return EXIT_WAITING


def rounds_rows(run: Any) -> list[tuple[str, Any]]:
    """Summary-table rows about a batch-mode stage: the rounds this command sent (Batch API
    mode) and all the rounds of its run directory."""
    from ..judge.batch import shard_states

    rows: list[tuple[str, Any]] = []
    for r in run.rounds:
        if r.get("mode") == "openai":
            statuses = ", ".join(f"{n} {s}" for s, n in sorted(r["statuses"].items()))
            rows.append((f"batch round {r['round']}",
                         f"{r['requests']:,} requests, {len(r['batches'])} batch(es): {statuses}"
                         f"; {r['failed_lines']:,} failed lines; {r['seconds']:.1f}s"))
    if run.run_dir is not None:
        shards = [s for s in shard_states(run.run_dir) if s.stage == run.stage]
        if shards:
            rows.append((f"batch rounds ({run.options.mode} mode), all runs",
                         f"{len({s.round for s in shards})} rounds, {len(shards)} part(s), "
                         f"{sum(s.requests for s in shards):,} requests, "
                         f"{sum(s.failed for s in shards):,} failed lines"))
    if run.client is not None and run.client.prices is not None:
        rows.append(("prices", "batch (discount applied)" if run.discounted
                     else "online (set prices.batch_discount for batch prices)"))
    return rows


# --------------------------------------------------------------------------- ingest


def _rerun(run_dir: Path, recorded: dict[str, Any], *, reissue_missing: bool,
           progress: bool) -> int:
    from ..judge.batch import BatchOptions

    batch = BatchOptions(**{**recorded["batch"], "reissue_missing": reissue_missing})
    stage = recorded["stage"]
    if stage == "score":
        from ..config import ScoreOptions
        from .score import run_score

        prompts = recorded.get("prompts")
        return run_score(Path(recorded["input"]), Path(recorded["output"]),
                         ScoreOptions.model_validate(recorded["options"]), run_dir=run_dir,
                         progress=progress, prompts=Path(prompts) if prompts else None,
                         batch=batch)
    if stage == "sample":
        from ..preference.sampling import SampleOptions
        from .data import run_sample

        return run_sample(Path(recorded["input"]), Path(recorded["output"]),
                          SampleOptions.model_validate(recorded["options"]), run_dir=run_dir,
                          progress=progress, batch=batch)
    raise UsageError(f"{run_dir} records a batch stage {stage!r} that this version cannot run")


def _recorded(run_dir: Path) -> dict[str, dict[str, Any]]:
    from ..store import RunStore

    if not (run_dir / "longreward.sqlite").exists():
        raise UsageError(f"{run_dir} is not a run directory (no longreward.sqlite): pass the "
                         "--run-dir of the `score --batch files` or `sample --batch files` run")
    with RunStore(run_dir) as store:
        return {stage: value for stage in ("sample", "score")
                if (value := store.get_meta(f"batch:invocation:{stage}"))}


def _shard_table(shards: list[Any], title: str, limit: int = 30) -> Any:
    rows: list[tuple[str, Any]] = []
    for s in shards[-limit:]:
        missing = f", [yellow]{s.missing:,} missing[/]" if s.missing else ""
        failed = f", [red]{s.failed:,} failed[/]" if s.failed else ""
        rows.append((f"{s.stage} round {s.round}: {Path(s.name).name}",
                     f"{s.answered:,}/{s.requests:,} answered{failed}{missing}"))
    if len(shards) > limit:
        rows.insert(0, ("…", f"{len(shards) - limit} earlier shard(s)"))
    return summary_table(title, rows)


@batch_app.command("ingest")
def ingest_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of the `--batch files` run (default of score/sample: OUTPUT.run/).", exists=True, file_okay=False)],
    results: Annotated[list[Path], typer.Argument(help="Result files or directories of them (*.jsonl), in any order: vllm run-batch outputs, Ray Data outputs, a provider's output and error files.")],
    reissue_missing: Annotated[bool, typer.Option("--reissue-missing", help="Send the requests whose result lines never came back again, in the next round (by default they are awaited: their shard may still be running somewhere).")] = False,
    go_on: Annotated[bool, typer.Option("--continue/--no-continue", help="After reading, run the stage on: it writes its next round or its final output.")] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar while the stage runs on.")] = True,
) -> None:
    """Read an executor's batch results into the run, then run the stage on to its next round or its final output."""
    from ..judge.batch import ingest_results

    recorded = _recorded(run_dir)
    report = ingest_results(run_dir, results)
    rows: list[tuple[str, Any]] = [
        ("files read", len(report.files)), ("result lines", report.lines),
        ("new", report.new), ("read before (ignored)", report.repeated)]
    if report.unknown:
        rows.append(("[red]naming no request of this run[/]", len(report.unknown)))
    if report.unreadable:
        rows.append(("[red]unreadable lines[/]", len(report.unreadable)))
    err.print(summary_table("longreward batch ingest", rows))
    for line in report.unreadable[:10]:
        err.print(f"[red]unreadable[/] {escape(line)}")
    if report.unknown:
        err.print(f"[yellow]{len(report.unknown)} line(s) name no request of {run_dir}[/] "
                  f"(e.g. {escape(report.unknown[0])}): results of another run directory?")
    err.print(_shard_table(report.shards, "shards"))
    if not go_on:
        raise typer.Exit(EXIT_WAITING if report.missing() else 0)
    if not recorded:
        raise UsageError(f"{run_dir} records no `--batch files` stage to run on")
    # The stage whose rounds these results answer: the one with the newest round.
    latest = max(report.shards, key=lambda s: s.round, default=None)
    stage = latest.stage if latest is not None and latest.stage in recorded else next(
        iter(recorded))
    raise typer.Exit(_rerun(run_dir, recorded[stage], reissue_missing=reissue_missing,
                            progress=progress))


@batch_app.command("status")
def status_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.", exists=True, file_okay=False)],
) -> None:
    """Show a run's batch rounds: each batch or shard, its status and its answered, failed and missing requests."""
    from ..judge.batch import BatchBook, shard_states, stages_with_batches

    _recorded(run_dir)
    shards = shard_states(run_dir)
    if not shards:
        err.print(f"{run_dir} has sent no batch round")
        raise typer.Exit(0)
    rows: list[tuple[str, Any]] = []
    for stage in stages_with_batches(run_dir):
        book = BatchBook(run_dir, stage)
        try:
            for part in book.parts():
                answered, failed = book.answered(part)
                where = part.batch_id or Path(part.name).name
                rows.append((f"{stage} round {part.round} part {part.part}",
                             f"{where}: {part.status}; {answered:,}/{part.n_requests:,} "
                             f"answered, {failed:,} failed"))
        finally:
            book.close()
    err.print(summary_table(f"batches of {run_dir}", rows))
    missing = sum(s.missing for s in shards)
    raise typer.Exit(EXIT_WAITING if missing else 0)


@batch_app.command("cancel")
def cancel_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of a `--batch openai` run.", exists=True, file_okay=False)],
    header: Annotated[list[str] | None, typer.Option("--header", help="Extra HTTP header the service needs, KEY=VALUE (repeatable; never written to the run).")] = None,
) -> None:
    """Cancel a run's batches that are still running. Their finished lines are kept when the run is resumed; the rest are sent again."""
    from ..judge.batch import BatchBook, OpenAIBatches, cancel_open_batches
    from ..judge.providers.openai_compatible import resolve_api_key

    recorded = _recorded(run_dir)
    cancelled: list[str] = []
    for stage, rec in recorded.items():
        if rec["batch"]["mode"] != "openai":
            continue
        section = rec["options"].get("judge") or rec["options"].get("policy") or {}
        env = section.get("api_key_env")
        key = resolve_api_key(os.environ.get(env) if env else None)
        base = (section.get("base_urls") or [None])[0] or "https://api.openai.com/v1"
        book = BatchBook(run_dir, stage)

        async def go(book: BatchBook = book, base: str = base, key: str = key) -> list[str]:
            ex = OpenAIBatches(base_url=base, api_key=key,
                               headers=key_values(header, "--header"))
            try:
                return await cancel_open_batches(book, ex)
            finally:
                await ex.aclose()

        try:
            cancelled += asyncio.run(go())
        finally:
            book.close()
    err.print(f"cancelled {len(cancelled)} batch(es)" + (f": {', '.join(cancelled)}"
                                                       if cancelled else ""))
