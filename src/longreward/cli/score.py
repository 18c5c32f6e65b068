"""``longreward score``."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from .._progress import stage_progress, summary_table
from ..config import ScoreOptions
from . import batch as batch_mode
from ._app import app
from ._common import (
    dry_run_banner,
    err,
    flag_overrides,
    key_values,
    option_values,
    report_errors,
    validate_options,
)


def build_score_options(config: Path | None, overrides: dict[str, Any],
                        section: str | None = None) -> ScoreOptions:
    """Config file (optionally one section of it) + CLI overrides → validated options."""
    return validate_options(ScoreOptions, config, overrides, section)


def score_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """``score``'s flag values, by parameter name, as nested option overrides. Shared with
    the commands that take the same flags (``longreward eval``); absent names count as not
    given."""
    v = defaultdict(lambda: None, flags)
    return flag_overrides(**{
        "judge.provider": "dry_run" if v["dry_run"] else v["provider"],
        "judge.model": v["model"], "judge.base_urls": v["base_url"],
        "judge.api_key_env": v["api_key_env"],
        "judge.temperature": v["temperature"], "judge.max_tokens": v["max_tokens"],
        "judge.timeout": v["timeout"], "judge.max_concurrency": v["concurrency"],
        "judge.max_retry_after": v["max_retry_after"],
        "judge.rpm": v["rpm"], "judge.tpm": v["tpm"], "judge.max_retries": v["max_retries"],
        "judge.structured_output": v["structured_output"],
        "judge.extra_headers": key_values(v["header"], "--header"),
        "judge.provider_options": option_values(v["provider_option"], "--provider-option"),
        "dimensions": [d.strip() for d in v["dimensions"].split(",")] if v["dimensions"] else None,
        "weights": {k: float(w) for k, w in (key_values(v["weight"], "--weight") or {}).items()} or None,
        "language": v["language"], "tokenizer": v["tokenizer"],
        "retrieval.method": v["retrieval"], "retrieval.model": v["retrieval_model"],
        "retrieval.top_k": v["top_k"], "retrieval.chunk_tokens": v["chunk_tokens"],
        "completeness_chunk_tokens": v["completeness_chunk_tokens"],
        "grade_batch_size": v["grade_batch_size"],
        "max_document_tokens": v["max_document_tokens"],
        "prompt_concurrency": v["prompt_concurrency"], "keep_context": v["keep_context"],
        "canonical_layout": v["canonical_layout"],
        "unscored_dimension": v["unscored_dimension"],
        "statement_grounding": v["statement_grounding"],
        "faithfulness_rule": v["faithfulness_rule"],
        "completeness_mode": v["completeness_mode"],
        "non_answer_floor": v["non_answer_floor"],
        "verdicts": v["verdicts"],
        "fields.id": v["field_id"], "fields.prompt_id": v["field_prompt_id"],
        "fields.context": v["field_context"], "fields.query": v["field_query"],
        "fields.response": v["field_response"], "fields.candidates": v["field_candidates"],
    })


#: score's flags that say how to reach and drive the judge
JUDGE_FLAGS = ("config", "provider", "model", "base_url", "dry_run", "api_key_env",
               "temperature", "max_tokens", "timeout", "concurrency", "rpm", "tpm",
               "max_retries", "max_retry_after", "structured_output", "header", "provider_option", "language")
#: score's flags that choose the reward's rules (docs/reward_rules.md): every command that
#: scores takes them
RULE_FLAGS = ("canonical_layout", "unscored_dimension", "statement_grounding",
              "faithfulness_rule", "completeness_mode", "non_answer_floor", "verdicts")
#: score's flags that decide how answers are scored and how the data's fields are named
SCORE_FLAGS = (*JUDGE_FLAGS, "dimensions", "weight", "tokenizer", "retrieval",
               "retrieval_model", "top_k", "chunk_tokens", "completeness_chunk_tokens",
               "grade_batch_size", "max_document_tokens", "prompt_concurrency", *RULE_FLAGS,
               "field_id",
               "field_prompt_id", "field_context", "field_query", "field_response")


@app.command("score")
def score_command(
    input: Annotated[Path, typer.Argument(help="JSONL, JSON or Parquet: flat rows (id, context, query, response) or grouped rows (id, context, query, candidates).", exists=True, dir_okay=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output JSONL, one row per answer.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML/TOML file with the same options (flags win).", exists=True)] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Run directory (SQLite cache + state). Default: OUTPUT.run/")] = None,
    prompts: Annotated[Path | None, typer.Option("--prompts", help="Prompts file (id, context, query): the document for rows that carry only a prompt_id (e.g. `sample --no-context`).", exists=True, dir_okay=False)] = None,
    provider: Annotated[str | None, typer.Option("--provider", help="Judge provider: openai_compatible (default), llama_cpp (a .gguf file in this process), transformers, vllm, dry_run.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Judge model name (or local path for transformers).")] = None,
    base_url: Annotated[list[str] | None, typer.Option("--base-url", help="OpenAI-compatible base URL; repeat to spread calls over several servers.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Use the offline dry-run judge (deterministic placeholders, not judgments).")] = False,
    api_key_env: Annotated[str | None, typer.Option(help="Env var holding the API key (default: LONGREWARD_API_KEY, then OPENAI_API_KEY).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Judge temperature (first attempt).")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Max tokens per judge reply.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Per-call timeout, seconds.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Max requests in flight per endpoint.")] = None,
    rpm: Annotated[float | None, typer.Option(help="Requests-per-minute limit.")] = None,
    tpm: Annotated[float | None, typer.Option(help="Tokens-per-minute limit.")] = None,
    max_retries: Annotated[int | None, typer.Option(help="Retries of a failed request (429, 5xx, timeouts).")] = None,
    max_retry_after: Annotated[float | None, typer.Option(help="Longest wait a server's Retry-After may impose before a retry, seconds (default 120); longer waits are capped and shown.")] = None,
    structured_output: Annotated[str | None, typer.Option(help="auto (JSON schema, text fallback), json or text.")] = None,
    header: Annotated[list[str] | None, typer.Option("--header", help="Extra HTTP header KEY=VALUE (repeatable).")] = None,
    provider_option: Annotated[list[str] | None, typer.Option("--provider-option", help="Provider setting KEY=VALUE (repeatable), as provider_options in a config file: e.g. n_ctx=8192, n_threads=8, n_gpu_layers=-1 for llama_cpp; device=cuda for transformers.")] = None,
    dimensions: Annotated[str | None, typer.Option(help="Comma-separated dimensions to score, e.g. helpfulness,faithfulness (default: all four: helpfulness, logicality, faithfulness, completeness).")] = None,
    weight: Annotated[list[str] | None, typer.Option("--weight", help="Reward weight DIM=W (repeatable; merged over a config file's weights). Once weights are set, a dimension without one counts 0.")] = None,
    language: Annotated[str | None, typer.Option(help="auto, en or zh: language of the judge prompts.")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="HF tokenizer name or path for chunking (default: built-in, no download).")] = None,
    retrieval: Annotated[str | None, typer.Option(help="bm25 (default), dense, api or hybrid.")] = None,
    retrieval_model: Annotated[str | None, typer.Option(help="Embedding model for dense/api/hybrid retrieval.")] = None,
    top_k: Annotated[int | None, typer.Option(help="Evidence chunks per statement (paper: 5).")] = None,
    chunk_tokens: Annotated[int | None, typer.Option(help="Retrieval chunk size in tokens (paper: 128).")] = None,
    completeness_chunk_tokens: Annotated[int | None, typer.Option(help="Extraction chunk size in tokens (paper: 4096).")] = None,
    grade_batch_size: Annotated[int | None, typer.Option(help="Statements graded per judge call (1 = paper; e.g. 8 cuts calls several-fold).")] = None,
    max_document_tokens: Annotated[int | None, typer.Option("--max-document-tokens", "--max-context-tokens", help="Reject documents longer than this many tokens (--max-context-tokens is its 0.1 name).")] = None,
    prompt_concurrency: Annotated[int | None, typer.Option(help="Prompts scored at once.")] = None,
    keep_context: Annotated[bool | None, typer.Option("--keep-context/--no-keep-context", help="Copy the document into each output row.")] = None,
    canonical_layout: Annotated[bool | None, typer.Option("--canonical-layout/--raw-layout", help="The judge sees the answer in a canonical layout (default), so layout alone cannot move the reward; --raw-layout sends it as written.")] = None,
    unscored_dimension: Annotated[str | None, typer.Option(help="no_reward (default: a dimension the judge left unscored makes the reward null) or mean_of_scored (the paper-era mean over the scored ones; an answer can then drop its weakest dimension). docs/reward_rules.md.")] = None,
    statement_grounding: Annotated[str | None, typer.Option(help="answer (default: a split statement whose numbers, names or content are not in the answer is dropped) or off (the paper).")] = None,
    faithfulness_rule: Annotated[str | None, typer.Option(help="fixed_cost (default: 10 minus a fixed cost per unsupported statement, so true padding cannot dilute a false claim) or mean (the paper's 10·Σa/n).")] = None,
    completeness_mode: Annotated[str | None, typer.Option(help="checklist (default: the extracted points marked covered/partly/not, 10·Σ/n) or holistic (the paper's 0-10 rating).")] = None,
    non_answer_floor: Annotated[bool | None, typer.Option("--non-answer-floor/--no-non-answer-floor", help="An answer with no grounded statement, no covered point and a low helpfulness gets 0 on every dimension (default on).")] = None,
    verdicts: Annotated[str | None, typer.Option(help="integer (the value the judge wrote; default) or expected (the expected value over the judge's token probabilities at the verdict, where the endpoint gives log-probabilities; else the integer, recorded per verdict).")] = None,
    field_id: Annotated[str | None, typer.Option(help="Input field holding the id.")] = None,
    field_prompt_id: Annotated[str | None, typer.Option(help="Input field holding the prompt id (flat rows).")] = None,
    field_context: Annotated[str | None, typer.Option(help="Input field holding the document.")] = None,
    field_query: Annotated[str | None, typer.Option(help="Input field holding the question.")] = None,
    field_response: Annotated[str | None, typer.Option(help="Input field holding the answer (flat rows).")] = None,
    field_candidates: Annotated[str | None, typer.Option(help="Input field holding the candidate list (grouped rows).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    retry_unscored: Annotated[bool, typer.Option("--retry-unscored", help="Score again the answers of earlier runs that have an unscored dimension (e.g. the judge was down); calls that succeeded come from the cache.")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Start the output over (e.g. after changing options), reusing the cached judge calls.")] = False,
    batch: Annotated[str | None, typer.Option("--batch", help=batch_mode.BATCH_HELP)] = None,
    batch_option: Annotated[list[str] | None, typer.Option("--batch-option", help=batch_mode.BATCH_OPTION_HELP)] = None,
) -> None:
    """Score answers to long-context questions on helpfulness, logicality, faithfulness and completeness. Resumable: rerun the same command after a crash and it goes on."""
    overrides = score_overrides(locals())
    options = build_score_options(config, overrides)
    if restart and retry_unscored:
        raise typer.BadParameter("--restart already redoes every answer; drop --retry-unscored")
    redo = "all" if restart else "unscored" if retry_unscored else "none"
    raise typer.Exit(run_score(input, output, options, run_dir=run_dir, progress=progress,
                               redo=redo, prompts=prompts,
                               batch=batch_mode.batch_options(batch, batch_option)))


def run_score(input: Path, output: Path, options: ScoreOptions, *, run_dir: Path | None = None,
              progress: bool = True, console: Console | None = None, redo: str = "none",
              prompts: Path | None = None, batch: Any = None) -> int:
    """Run the score stage with a progress bar and a summary; returns the exit code. Errors
    of ours propagate to the CLI's one boundary (message, exit code 2). ``batch``
    (``BatchOptions``) sends the judge calls as rounds of batch requests."""
    from ..io.files import default_run_dir, rejected_path
    from ..judge.batch import BatchPending, BatchRun
    from ..reward.scorer import LongReward, build_client
    from ..stages.score import check_score_paths, score_file
    from ..store import StaleRunError

    console = console or err
    dry_run_banner(options.judge.provider, console=console)
    run_dir = run_dir or default_run_dir(output)
    check_score_paths(input, output, run_dir, prompts)  # before a progress bar is drawn
    rounds = BatchRun(batch, "score", invocation=batch_mode.invocation(
        "score", options, batch, input=input, output=output, prompts=prompts)) if batch else None

    async def main() -> Any:
        # score_file attaches the run's store as the call cache.
        client = rounds.make_client(options.judge, structured_output=options.judge
                                    .structured_output) if rounds else build_client(options)
        scorer = LongReward(client, options=options)
        with stage_progress("score", console=console, enabled=progress,
                            stats=rounds.snapshot if rounds else scorer.client.snapshot) as bar:
            try:
                return await score_file(
                    input, output, options, run_dir=run_dir, scorer=scorer,
                    on_start=lambda total, done: bar.start(total, done),
                    on_answer=lambda row: bar.advance(), redo=redo,  # type: ignore[arg-type]
                    prompts_path=prompts, batch=rounds)
            except StaleRunError as exc:
                raise StaleRunError(f"{exc} Or rerun with --restart to score again with the "
                                    "new options, reusing the judge calls cached so far.") from None
            finally:
                await scorer.aclose()

    try:
        summary = asyncio.run(main())
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: finished answers are saved; rerun the same "
                      "command to continue.[/]")
        return 130
    except BatchPending as exc:
        return batch_mode.report_pending(exc, console)
    report_errors(summary.rejected, rejected_path(output), console)
    if summary.internal_errors:
        console.print(f"[red]{summary.internal_errors} dimension(s) ended unscored by an "
                      "internal error[/] (a bug, not the judge): the tracebacks are in the log "
                      "above; please report them")
    console.print(_score_table(summary, options, output,
                               batch_mode.rounds_rows(rounds) if rounds else []))
    for line in closing_lines(summary, run_dir):
        console.print(line)
    return summary.exit_code


def closing_lines(summary: Any, run_dir: Path) -> list[str]:
    """What to do next, when the run left something to do: answers the judge failed (with
    the most common reason), answers kept from another run directory."""
    lines = []
    if summary.kept_from_elsewhere:
        n = len(summary.kept_from_elsewhere)
        lines.append(f"[yellow]note:[/] {n} answer(s) were already in the output, scored by "
                     f"another run directory (not {escape(str(run_dir))}): kept, not scored "
                     "again; --restart scores them again with this run's options")
    if summary.all_unscored:
        reason = (summary.unscored_reasons.most_common(1) or [("", 0)])[0][0]
        lines.append(
            f"[red]{summary.all_unscored} answer(s) are unscored on every dimension[/]: the "
            "judge failed them" + (f" (most often: {escape(reason[:200])})" if reason else "")
            + ". Fix the judge (is the server up, is --base-url right?), then rerun the same "
            "command with --retry-unscored: scored answers and cached calls are kept.")
    partly = summary.no_reward - summary.all_unscored
    if partly > 0:
        lines.append(f"[yellow]{partly} answer(s) have no reward[/]: the judge left a dimension "
                     "unscored (the reasons are in the rows' 'unscored'); rerun with "
                     "--retry-unscored once the judge is healthy")
    return lines


def _score_table(summary: Any, options: ScoreOptions, output: Path,
                 extra: list[tuple[str, Any]] | None = None) -> Any:
    s = summary.stats
    rows: list[tuple[str, Any]] = [
        ("answers", summary.answers_total),
        ("already done (resumed)", summary.answers_done_before),
        ("changed since scored (scored again)", summary.changed),
        ("judged this run", summary.answers_scored),
        ("with a reward", summary.reward_count),
        ("unscored on every dimension", summary.all_unscored),
        ("no reward (a dimension unscored by the judge)", summary.no_reward),
        ("flagged: verdict-shaped or judge-addressed text",
         f"{summary.flagged_answers}" + (" (" + ", ".join(
             f"{k} {n}" for k, n in sorted(summary.flags_by_kind.items())) + ")"
             if summary.flags_by_kind else "")),
        ("non-answers floored / ungrounded statements dropped",
         f"{summary.floored_answers} / {summary.dropped_statements}"),
        ("records rejected", len(summary.rejected)),
    ]
    if summary.kept_from_elsewhere:
        rows.insert(2, ("kept from another run directory", len(summary.kept_from_elsewhere)))
    for name in options.dimensions:
        n = summary.score_counts.get(name, 0)
        mean = f"{summary.score_sums[name] / n:.2f}" if n else "–"
        rows.append((f"{name} mean (unscored / 0 by the answer)",
                     f"{mean} ({summary.unscored_by_dimension.get(name, 0)} / "
                     f"{summary.answer_caused_by_dimension.get(name, 0)})"))
    if summary.reward_count:
        rows.append(("reward mean", f"{summary.reward_sum / summary.reward_count:.2f}"))
    rows += [("judge requests", s.get("requests", 0)), ("cache hits", s.get("cache_hits", 0)),
             ("retries", s.get("retries", 0)),
             ("tokens in / out / cached", f"{s.get('prompt_tokens', 0):,} / "
              f"{s.get('completion_tokens', 0):,} / {s.get('cached_tokens', 0):,}"),
             ("wall time", f"{summary.wall_seconds:.1f}s"), ("output", str(output))]
    if s.get("cost_usd") is not None:
        rows.append(("estimated cost", f"${s['cost_usd']:.4f}"))
    return summary_table("longreward score", rows + (extra or []))
