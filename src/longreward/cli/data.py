"""``longreward sample``, ``pairs``, ``mix`` and ``run``: preference data end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape

from .._progress import stage_progress, summary_table
from ..errors import UsageError
from ..preference.formats import PAIR_FORMATS
from . import batch as batch_mode
from ._app import app
from ._common import (
    SHOW_ERRORS,
    dry_run_banner,
    err,
    flag_overrides,
    option_values,
    report_errors,
    validate_options,
    with_flags_of,
)
from .score import JUDGE_FLAGS, build_score_options, score_command, score_overrides

#: score's flags that name the judge of ``pairs --selection listwise`` (``--config`` is the
#: pairs command's own: its ``score:`` section names the judge, as in a run config)
PAIRS_JUDGE_FLAGS = tuple(f for f in JUDGE_FLAGS if f != "config")


def _calls(s: Any) -> str:
    return f"{s.requests} requests, {s.cache_hits} cache hits"


def _sample_table(s: Any, extra: list[tuple[str, Any]] | None = None) -> Any:
    rows: list[tuple[str, Any]] = [
        ("prompts", s.prompts),
        ("already done (resumed)", s.already_done),
        ("prompts changed since sampled (sampled again)", s.changed),
        ("sampled this run", s.sampled),
        ("failed prompts", len(s.failed)),
        ("answers written", s.candidates),
        ("identical answers (duplicate_of)", s.duplicates),
        ("documents truncated", s.truncated),
        ("records rejected", len(s.errors)),
        ("policy calls", _calls(s)),
        ("tokens in / out", f"{s.prompt_tokens:,} / {s.completion_tokens:,}"),
        ("wall time", f"{s.seconds:.1f}s"),
        ("output", s.output),
    ]
    return summary_table("longreward sample", rows + (extra or []))


def _pairs_table(s: Any) -> Any:
    rows: list[tuple[str, Any]] = [
        ("prompts", s.prompts),
        ("scored answers read", s.answers),
        ("pairs", s.pairs),
    ]
    from ..preference.pairs import SKIP_REASONS

    for reason in SKIP_REASONS:
        if s.skipped.get(reason):
            rows.append((f"skipped: {reason}", s.skipped[reason]))
    if s.empty_responses:
        rows.append(("empty answers left out", s.empty_responses))
    rows.append(("records rejected", len(s.errors)))
    margin = (s.stats or {}).get("margin")
    if margin:
        rows.append(("margin mean (min–max)", f"{margin['mean']:.2f} ({margin['min']:.2f}–{margin['max']:.2f})"))
    listwise = (s.stats or {}).get("listwise")
    if listwise:
        rows.append(("listwise: both orders agreed",
                     f"{listwise['orders_agreed']} of {listwise['orders_asked']} choices"))
        rows.append(("listwise: judge requests",
                     f"{listwise.get('requests', 0)} sent, {listwise.get('cache_hits', 0)} "
                     "from the cache"))
    rows += [("outputs", ", ".join(s.outputs)), ("dataset card", s.card)]
    return summary_table("longreward pairs", rows)


# --------------------------------------------------------------------------- sample


@app.command("sample")
def sample_command(
    prompts: Annotated[Path, typer.Argument(help="JSONL, JSON or Parquet with id, context, query.", exists=True, dir_okay=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Candidates JSONL (one row per answer; the input of `longreward score`).")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML/TOML with the same options (its `sample:` section if present); flags win.", exists=True)] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Run directory (SQLite cache + state). Default: OUTPUT.run/")] = None,
    provider: Annotated[str | None, typer.Option(help="Policy provider: openai_compatible (default), llama_cpp (a .gguf file in this process), vllm, transformers, dry_run.")] = None,
    provider_option: Annotated[list[str] | None, typer.Option("--provider-option", help="Provider setting KEY=VALUE (repeatable), as provider_options in a config file: e.g. n_ctx=8192, n_threads=8, n_gpu_layers=-1 for llama_cpp; device=cuda for transformers.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Served model name, HF name/path for vllm/transformers, or a .gguf file for llama_cpp.")] = None,
    base_url: Annotated[list[str] | None, typer.Option("--base-url", help="OpenAI-compatible base URL (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Offline dry-run policy (placeholder answers, not a model).")] = False,
    style: Annotated[str | None, typer.Option(help="chat (server applies the chat template) or completion (we apply it).")] = None,
    api_key_env: Annotated[str | None, typer.Option(help="Env var holding the API key.")] = None,
    n: Annotated[int | None, typer.Option("-n", "--n", help="Answers per prompt (paper: 10).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (paper: 1.0).")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling p.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Max tokens per answer.")] = None,
    seed: Annotated[int | None, typer.Option(help="Base seed (request k of a prompt uses seed+k).")] = None,
    n_per_request: Annotated[int | None, typer.Option(help="Answers per request; default all N in one request with n=.")] = None,
    system_prompt: Annotated[str | None, typer.Option(help="System message before each prompt.")] = None,
    prompt_template: Annotated[str | None, typer.Option(help="User-turn layout with $context and $query.")] = None,
    context_window: Annotated[int | None, typer.Option("--context-window", "--max-context-tokens", help="The policy's context window in tokens; longer documents are cut in the middle (--max-context-tokens is its 0.1 name).")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="HF tokenizer (name/path) for counting and completion chat templates.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Max requests in flight per endpoint.")] = None,
    prompt_concurrency: Annotated[int | None, typer.Option(help="Prompts in flight at once.")] = None,
    rpm: Annotated[float | None, typer.Option(help="Requests-per-minute limit.")] = None,
    tpm: Annotated[float | None, typer.Option(help="Tokens-per-minute limit.")] = None,
    max_retries: Annotated[int | None, typer.Option(help="Retries of a failed request.")] = None,
    max_retry_after: Annotated[float | None, typer.Option(help="Longest wait a server's Retry-After may impose before a retry, seconds (default 120).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Per-request timeout, seconds.")] = None,
    field_id: Annotated[str | None, typer.Option(help="Input field holding the prompt id.")] = None,
    field_context: Annotated[str | None, typer.Option(help="Input field holding the document.")] = None,
    field_query: Annotated[str | None, typer.Option(help="Input field holding the question.")] = None,
    context: Annotated[bool | None, typer.Option("--context/--no-context", help="Copy the document into every candidate row (default), or keep only prompt_id and let `score --prompts` / `pairs --prompts` join it back.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    batch: Annotated[str | None, typer.Option("--batch", help=batch_mode.BATCH_HELP)] = None,
    batch_option: Annotated[list[str] | None, typer.Option("--batch-option", help=batch_mode.BATCH_OPTION_HELP)] = None,
) -> None:
    """Sample N answers per long-context prompt from the policy. Resumable: rerun the same command after a crash and it goes on."""
    from ..preference.sampling import SampleOptions

    flags = flag_overrides(**{
        "policy.provider": "dry_run" if dry_run else provider, "policy.model": model,
        "policy.base_urls": base_url, "policy.style": style, "policy.api_key_env": api_key_env,
        "policy.provider_options": option_values(provider_option, "--provider-option"),
        "policy.max_concurrency": concurrency, "policy.rpm": rpm, "policy.tpm": tpm,
        "policy.max_retries": max_retries, "policy.timeout": timeout,
        "policy.max_retry_after": max_retry_after,
        "n": n, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
        "seed": seed, "n_per_request": n_per_request, "system_prompt": system_prompt,
        "prompt_template": prompt_template, "context_window": context_window,
        "tokenizer": tokenizer, "prompt_concurrency": prompt_concurrency,
        "fields.id": field_id, "fields.context": field_context, "fields.query": field_query,
        "include_context": context,
    })
    options = validate_options(SampleOptions, config, flags, "sample")
    raise typer.Exit(run_sample(prompts, output, options, run_dir=run_dir, progress=progress,
                                batch=batch_mode.batch_options(batch, batch_option)))


def run_sample(prompts: Path, output: Path, options: Any, *, run_dir: Path | None = None,
               progress: bool = True, batch: Any = None) -> int:
    """The sample stage with a progress bar and a summary; returns the exit code. ``batch``
    (``BatchOptions``) sends the requests as rounds of batch requests."""
    from ..io.files import default_run_dir, rejected_path
    from ..judge.batch import BatchPending, BatchRun
    from ..preference.sampling import build_policy_client
    from ..stages.sample import batch_policy_client, sample_file

    run_dir = run_dir or default_run_dir(output)
    rounds = BatchRun(batch, "sample", invocation=batch_mode.invocation(
        "sample", options, batch, input=prompts, output=output)) if batch else None

    async def main() -> Any:
        client = (batch_policy_client(options, rounds) if rounds
                  else build_policy_client(options.policy))
        snapshot = rounds.snapshot if rounds else client.snapshot
        try:
            with stage_progress("sample", console=err, enabled=progress,
                                stats=lambda: {**snapshot()["by_tag"].get("sample", {}),
                                               "notices": snapshot()["notices"]}) as bar:
                return await sample_file(prompts, output, options, run_dir=run_dir, client=client,
                                         on_start=bar.start, on_prompt=lambda _p: bar.advance(),
                                         batch=rounds)
        finally:
            await client.aclose()

    try:
        summary = asyncio.run(main())
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: finished answers are saved; rerun the same command "
                  "to continue.[/]")
        return 130
    except BatchPending as exc:
        return batch_mode.report_pending(exc, err)
    report_errors(summary.errors, rejected_path(output))
    for pid, why in list(summary.failed.items())[:SHOW_ERRORS]:
        err.print(f"[red]failed[/] prompt {pid}: {why}")
    err.print(_sample_table(summary, batch_mode.rounds_rows(rounds) if rounds else []))
    return summary.exit_code


# --------------------------------------------------------------------------- pairs


@app.command("pairs")
@with_flags_of(score_command, PAIRS_JUDGE_FLAGS)
def pairs_command(
    scored: Annotated[Path, typer.Argument(help="Scored answers (output of `longreward score`).", exists=True, dir_okay=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Pairs file; writes STEM.jsonl, STEM.parquet and the card STEM.md.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML/TOML (its `pairs:` section if present); flags win.", exists=True)] = None,
    prompts: Annotated[Path | None, typer.Option(help="Original prompts file, for the document when scored rows lack `context`.", exists=True, dir_okay=False)] = None,
    format: Annotated[str | None, typer.Option("--format", "-f", help=f"{', '.join(PAIR_FORMATS)}.")] = None,
    min_candidates: Annotated[int | None, typer.Option(help="Scored answers needed per prompt (paper's code: 5).")] = None,
    min_margin: Annotated[float | None, typer.Option(help="Skip pairs with a smaller reward gap.")] = None,
    not_worse_on: Annotated[str | None, typer.Option(help="Comma-separated dimensions where chosen must score ≥ rejected.")] = None,
    system_prompt: Annotated[str | None, typer.Option(help="System message in each prompt.")] = None,
    prompt_template: Annotated[str | None, typer.Option(help="User-turn layout with $context and $query.")] = None,
    prompt_key: Annotated[str | None, typer.Option(help="openrlhf: prompt column.")] = None,
    chosen_key: Annotated[str | None, typer.Option(help="openrlhf: chosen column.")] = None,
    rejected_key: Annotated[str | None, typer.Option(help="openrlhf: rejected column.")] = None,
    parquet: Annotated[bool | None, typer.Option("--parquet/--no-parquet", help="Also write STEM.parquet.")] = None,
    push_to_hub: Annotated[str | None, typer.Option(help="Upload to this Hub dataset repo (needs `datasets`).")] = None,
    private: Annotated[bool, typer.Option(help="Make the Hub dataset private.")] = False,
    run_dir: Annotated[list[Path] | None, typer.Option("--run-dir", help="Run directory of the score run, where it kept the documents (default: SCORED.run/); repeatable.")] = None,
    field_id: Annotated[str | None, typer.Option(help="Prompts file: id field.")] = None,
    field_context: Annotated[str | None, typer.Option(help="Prompts file: document field.")] = None,
    field_query: Annotated[str | None, typer.Option(help="Prompts file: question field.")] = None,
    selection: Annotated[str | None, typer.Option(help="pointwise: highest reward chosen, lowest rejected (needs scored answers). listwise: a judge sees all of a prompt's answers at once, in two orders, and names the best and the worst (answers need no scores; give the judge with --base-url/--model or the config's score: section). See docs/listwise.md.")] = None,
    group_size: Annotated[int | None, typer.Option(help="Listwise: answers per judge call; more run as a tournament.")] = None,
    max_prompt_tokens: Annotated[int | None, typer.Option(help="Listwise: a request longer than this shows evidence excerpts instead of the whole document.")] = None,
    borrowed: dict[str, Any] | None = None,
) -> None:
    """Turn scored answers into DPO pairs: highest reward chosen, lowest rejected (or, with --selection listwise, the judge's best and worst of each prompt's answers). The documents come from the scored rows, --prompts, or the score run's store (found by itself)."""
    from ..io.files import rejected_path
    from ..preference.pairs import PairOptions
    from ..stages.pairs import build_pairs

    flags = flag_overrides(**{
        "format": format, "min_candidates": min_candidates, "min_margin": min_margin,
        "not_worse_on": [d.strip() for d in not_worse_on.split(",") if d.strip()] if not_worse_on else None,
        "system_prompt": system_prompt, "prompt_template": prompt_template,
        "prompt_key": prompt_key, "chosen_key": chosen_key, "rejected_key": rejected_key,
        "write_parquet": parquet,
        "fields.id": field_id, "fields.context": field_context, "fields.query": field_query,
        "selection": selection, "listwise.group_size": group_size,
        "listwise.max_prompt_tokens": max_prompt_tokens,
    })
    options = validate_options(PairOptions, config, flags, "pairs")
    judge_flags = score_overrides(borrowed or {})
    judge = None
    if options.selection == "listwise":
        from ..config import load_config_file

        # the judge comes from the config's score: section only: a pairs-only file (its
        # keys at the top) holds no judge options
        has_score = config is not None and isinstance(load_config_file(config).get("score"),
                                                      dict)
        judge = build_score_options(config if has_score else None, judge_flags, "score")
        dry_run_banner(judge.judge.provider, console=err)
    elif judge_flags:
        raise UsageError(f"judge flags ({', '.join(sorted(judge_flags))}) are for "
                         "--selection listwise; pointwise pairs use the scores in the file")
    summary = build_pairs(scored, output, options, prompts_path=prompts,
                          prompt_fields=options.fields, run_dirs=run_dir or None,
                          push_to_hub=push_to_hub, private=private, judge=judge)
    report_errors(summary.errors, rejected_path(output))
    err.print(_pairs_table(summary))
    problem = summary.problem
    if problem:
        err.print(f"[red]{escape(problem)}[/]")
    raise typer.Exit(summary.exit_code)


# --------------------------------------------------------------------------- mix


@app.command("mix")
def mix_command(
    long: Annotated[Path, typer.Argument(help="Long-context pairs (any supported format).", exists=True, dir_okay=False)],
    short: Annotated[str, typer.Argument(help="Short-context pairs: a file, a saved dataset dir, or a HF dataset name.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Mixed pairs; writes STEM.jsonl and STEM.parquet.")],
    ratio: Annotated[float, typer.Option(help="Short pairs per long pair (drawn without replacement).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for drawing and shuffling.")] = 0,
    format: Annotated[str | None, typer.Option("--format", "-f", help="Output format (default: the long file's).")] = None,
    short_split: Annotated[str, typer.Option(help="Split of a HF dataset.")] = "train",
    short_config: Annotated[str | None, typer.Option(help="Config name of a HF dataset.")] = None,
    prompt_key: Annotated[str, typer.Option(help="openrlhf: prompt column.")] = "prompt",
    chosen_key: Annotated[str, typer.Option(help="openrlhf: chosen column.")] = "chosen",
    rejected_key: Annotated[str, typer.Option(help="openrlhf: rejected column.")] = "rejected",
    parquet: Annotated[bool, typer.Option("--parquet/--no-parquet", help="Also write STEM.parquet.")] = True,
) -> None:
    """Mix long-context pairs with short-context preference data (LongReward §4.1)."""
    from ..io.files import check_output, rejected_path, write_rejected
    from ..preference.formats import PairKeys, check_pair_format
    from ..preference.mix import mix_pairs

    if format is not None:
        try:
            check_pair_format(format)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    check_output(output.with_suffix(".jsonl"), inputs=(long, Path(short)),
                 extra=(output.with_suffix(".parquet"), rejected_path(output)))
    summary = mix_pairs(
        long, short, output, ratio=ratio, seed=seed, fmt=format,  # type: ignore[arg-type]
        keys=PairKeys(prompt_key, chosen_key, rejected_key), short_split=short_split,
        short_name=short_config, write_parquet=parquet,
    )
    write_rejected(output, summary.errors)
    report_errors(summary.errors, rejected_path(output))
    rows = [("long pairs", summary.long), ("short pairs available", summary.short_available),
            ("short pairs used", summary.short_used)]
    if summary.shortfall:
        rows.append(("short pairs missing for the ratio", summary.shortfall))
    rows += [("total", summary.total), ("format", summary.format),
             ("records rejected", len(summary.errors)), ("outputs", ", ".join(summary.outputs))]
    err.print(summary_table("longreward mix", rows))
    raise typer.Exit(1 if summary.errors else 0)


# --------------------------------------------------------------------------- run


@app.command("run")
def run_command(
    config: Annotated[Path, typer.Argument(help="Run config (YAML/TOML): prompts, run_dir, sample, score, pairs.", exists=True, dir_okay=False)],
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """sample → score → pairs from one config file. Each stage resumes where it stopped; a rerun with nothing new to do makes no model call."""
    from ..stages.run import load_run_config, run_pipeline
    from .score import _score_table

    try:
        cfg = load_run_config(config)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise typer.BadParameter(f"{config}: invalid config:\n" + "\n".join(lines)) from None
    dry_run_banner(cfg.sample.policy.provider, cfg.score.judge.provider)

    def bar(name: str, stats: Any) -> Any:
        return stage_progress(name, console=err, enabled=progress, stats=stats)

    def stage_done(name: str, s: Any) -> None:
        if name == "train":
            err.print(summary_table("longreward train", [
                ("steps", s.steps), ("output", str(s.output_dir)),
                *((k, f"{v:.4g}") for k, v in s.last_metrics.items() if k in (
                    "loss", "rewards/accuracies", "rewards/margins"))]))
        elif name == "score":
            err.print(_score_table(s, cfg.score, Path(cfg.outputs.scored)))
        else:
            err.print({"sample": _sample_table, "pairs": _pairs_table}[name](s))

    try:
        summary = asyncio.run(run_pipeline(cfg, stage_bar=bar, on_stage_done=stage_done))
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: finished work is saved; rerun the same command to "
                  "continue.[/]")
        raise typer.Exit(130) from None
    for stage, errors in (("sample", summary.sample.errors if summary.sample else []),
                          ("score", summary.score.rejected if summary.score else []),
                          ("pairs", summary.pairs.errors if summary.pairs else [])):
        for e in errors[:SHOW_ERRORS]:
            err.print(f"[red]{stage}: rejected[/] {e}")
    err.print(summary_table("longreward run", [
        *((f"{k} wall time", f"{v:.2f}s") for k, v in summary.seconds.items()),
        *((f"{k} model calls", v) for k, v in summary.model_calls.items()),
        ("pairs", summary.pairs.pairs if summary.pairs else 0),
        ("pairs file", cfg.outputs.pairs),
    ]))
    problem = summary.pairs.problem if summary.pairs else None
    if problem:
        err.print(f"[red]{escape(problem)}[/]")
    raise typer.Exit(summary.exit_code)
