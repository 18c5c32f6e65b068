"""``longreward eval agreement | facts | reference``.

The judge and scoring flags are ``longreward score``'s own parameters, borrowed (declaration,
help and default) rather than declared again, and mapped to options by the same
``score_overrides``; so ``eval`` takes exactly the flags ``score`` takes, and a flag added to
``score`` reaches ``eval`` too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .._progress import stage_progress, summary_table
from ._app import app
from ._common import dry_run_banner, err, report_errors, with_flags_of
from .score import (
    JUDGE_FLAGS,
    SCORE_FLAGS,
    build_score_options,
    score_command,
    score_overrides,
)

eval_app = typer.Typer(help="Can the reward be trusted? Agreement with human labels, "
                            "FactScore-style counts, reference-answer grading.",
                       no_args_is_help=True)
app.add_typer(eval_app, name="eval")

def _options(borrowed: dict[str, Any]) -> Any:
    return build_score_options(borrowed.get("config"), score_overrides(borrowed))


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _ci(m: dict[str, Any]) -> str:
    lo, hi = m["ci"]
    return "–" if lo is None else f"{100 * lo:.1f}–{100 * hi:.1f}"


def agreement_table(result: dict[str, Any]) -> Table:
    """The console table of an agreement result."""
    t = Table(title=f"agreement with human labels: {result['pairs']} pairs, "
                    f"{result['prompts']} prompts", title_justify="left")
    t.add_column("method", no_wrap=True)
    for col in ("accuracy", "95% CI", "n", "a/d/t/n", "calls"):
        t.add_column(col, justify="right")

    def add(name: str, m: dict[str, Any], calls: Any = "") -> None:
        t.add_row(name, _pct(m["accuracy"]), _ci(m), str(m["n"]),
                  f"{m['agree']}/{m['disagree']}/{m['ties']}/{m['abstained']}", str(calls))

    group = None
    for m in result["methods"]:
        if group is not None and m["group"] != group and m["group"] != "dimension":
            t.add_section()
        group = m["group"]
        cost = m.get("cost") or {}
        add(f"  {m['name']}" if group == "dimension" else m["name"], m,
            "" if group == "dimension" else cost.get("calls", ""))
    if result["ablation"]:
        t.add_section()
    for m in result["ablation"]:
        delta = "" if m["delta"] is None else f" ({100 * m['delta']:+.1f})"
        add(f"− {m['removed']}{delta}", m, 0)
    t.caption = (f"a/d/t/n: agree, disagree, tie, no verdict. Ties: {result['tie_rule']} — "
                 f"{result['tie_rule_text']}. 95% CI: "
                 f"bootstrap over prompts, {result['bootstrap']['resamples']} resamples, "
                 f"seed {result['bootstrap']['seed']}. − DIM: the reward without it, "
                 f"recombined from stored scores ({result['ablation_requests']} judge calls, "
                 f"{result['ablation_seconds'] * 1000:.1f} ms). calls: judge calls the method "
                 "needs (sent + found in the cache).")
    return t


# --------------------------------------------------------------------------- agreement


@eval_app.command("agreement")
@with_flags_of(score_command, SCORE_FLAGS)
def agreement_command(
    data: Annotated[Path, typer.Argument(help="Pairwise rows {id, context, query, response_a, response_b, label: a|b|tie}, or pointwise rows {id, prompt_id, context, query, response, <human score>}.", exists=True, dir_okay=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Result JSON. The scored answers go to STEM.scored.jsonl beside it.")],
    run_dir: Annotated[Path | None, typer.Option(help="Run directory (store, call cache). Default: OUTPUT.run/")] = None,
    label_field: Annotated[str, typer.Option(help="Pairwise: the label column (a, b or tie). Pointwise: the human score column.")] = "label",
    min_gap: Annotated[float, typer.Option(help="Pointwise: form a pair only when the two human scores differ by more than this.")] = 0.0,
    lower_is_better: Annotated[bool, typer.Option("--lower-is-better", help="Pointwise: a lower human score means a better answer.")] = False,
    response_a_field: Annotated[str, typer.Option(help="Pairwise: the first answer's column.")] = "response_a",
    response_b_field: Annotated[str, typer.Option(help="Pairwise: the second answer's column.")] = "response_b",
    baselines: Annotated[str, typer.Option(help="Comma-separated baselines: pairwise (2 judge calls per pair), holistic (1 call per answer), length, consensus (free); 'all'; 'none'.")] = "length,consensus",
    consensus_pool: Annotated[Path | None, typer.Option(help="Extra answers (rows with prompt_id, response) that the consensus baseline compares against.", exists=True, dir_okay=False)] = None,
    ties: Annotated[str, typer.Option(help="Tie rule: half (a tie or no verdict counts 0.5), wrong (counts 0) or skip (left out).")] = "half",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% interval (0: none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    borrowed: dict[str, Any] | None = None,
) -> None:
    """Agreement of the reward, each dimension, the leave-one-out rewards and the baselines with human preference labels. Scores through the resumable score stage: a rerun makes no judge call."""
    from ..eval.agreement import AgreementOptions, evaluate_agreement
    from ..io.files import rejected_path
    from ..reward.scorer import LongReward, build_client

    options = _options(borrowed or {})
    agreement = _validated(AgreementOptions, {
        "label_field": label_field, "min_gap": min_gap, "higher_is_better": not lower_is_better,
        "response_a_field": response_a_field, "response_b_field": response_b_field,
        "baselines": [] if baselines.strip() == "none" else
        [b.strip() for b in baselines.split(",") if b.strip()],
        "consensus_pool": str(consensus_pool) if consensus_pool else None,
        "ties": ties, "bootstrap": bootstrap, "seed": seed})
    dry_run_banner(options.judge.provider)

    async def main() -> dict[str, Any]:
        scorer = LongReward(build_client(options), options=options)
        try:
            with stage_progress("eval: scoring", console=err, enabled=progress,
                                stats=scorer.client.snapshot) as bar:
                return await evaluate_agreement(
                    data, output, options, agreement, run_dir=run_dir, scorer=scorer,
                    on_start=lambda total, done: bar.start(total, done),
                    on_answer=lambda _row: bar.advance())
        finally:
            await scorer.aclose()

    result = _run(main)
    from ..errors import RecordError

    rejected = [RecordError(r["record"], r.get("field"), r["error"])
                for r in _read_rejected(rejected_path(output))]
    report_errors(rejected, rejected_path(output))
    if result["pairs"] == 0:
        err.print("[yellow]warning:[/] no pair with a human preference was formed: check "
                  "--label-field (and --min-gap for pointwise data)")
    err.print(agreement_table(result))
    for note in result.get("notes") or []:
        err.print(f"[yellow]note:[/] {note}")
    err.print(f"results: {output}; scored answers: {result['scored']}")
    raise typer.Exit(result["exit_code"])


def _validated(model: Any, values: dict[str, Any]) -> Any:
    from ._common import validate_options

    return validate_options(model, None, values)


def _read_rejected(path: Path) -> list[dict[str, Any]]:
    from ..io.files import read_rows

    return read_rows(path)[0] if path.exists() else []


def _run(main: Callable[[], Any]) -> Any:
    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: finished work is saved; rerun the same command to "
                  "continue.[/]")
        raise typer.Exit(130) from None


# --------------------------------------------------------------------------- facts


def _num(x: Any, fmt: str = "{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)




@eval_app.command("facts")
def facts_command(
    scored: Annotated[list[Path], typer.Argument(help="One scored file, or two to compare (e.g. before and after DPO).", exists=True, dir_okay=False)],
    by: Annotated[str | None, typer.Option(help="Group by this field of the rows (or of their meta), e.g. model.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Also write the numbers as JSON.")] = None,
) -> None:
    """FactScore-style counts from the faithfulness details of scored answers (no judge call): statements per answer, % fully / partially / not supported, answers with no statement. Two files: their differences."""
    from ..eval import write_result
    from ..eval.facts import FACT_ROWS, compare_facts, facts_of_file

    if len(scored) > 2:
        raise typer.BadParameter("give one scored file, or two to compare")
    stats = [facts_of_file(p, by) for p in scored]
    t = Table(title="facts (from faithfulness details; no judge calls)", title_justify="left")
    t.add_column("")
    columns: list[tuple[str, dict[str, Any]]] = []
    for path, s in zip(scored, stats, strict=True):
        for group, values in s.items():
            name = group if len(scored) == 1 else (
                f"{path.name}" if by is None else f"{path.name}: {group}")
            columns.append((name, values))
    diff = compare_facts(stats[0], stats[1]) if len(stats) == 2 else {}
    for name, _ in columns:
        t.add_column(name, justify="right")
    for group in diff:
        t.add_column("Δ" if by is None else f"Δ {group}", justify="right")
    for label, key, fmt in FACT_ROWS:
        t.add_row(label, *(_num(v.get(key), fmt) for _, v in columns),
                  *(_num(d.get(key), "{:+.2f}") for d in diff.values()))
    err.print(t)
    if len(stats) == 2 and not diff:
        err.print("[yellow]warning:[/] the two files share no group to compare; group with "
                  "the same --by field")
    if output is not None:
        write_result(output, {"kind": "longreward.eval.facts", "version": 1, "by": by,
                              "files": [str(p) for p in scored], "stats": stats,
                              "difference": diff})
        err.print(f"results: {output}")


# --------------------------------------------------------------------------- reference


@eval_app.command("reference")
@with_flags_of(score_command, (*JUDGE_FLAGS, "field_id", "field_prompt_id", "field_context",
                               "field_query", "field_response"))
def reference_command(
    questions: Annotated[Path, typer.Argument(help="Questions: id, query, reference answer, optional scored examples [{answer, score}] (and context, to generate answers).", exists=True, dir_okay=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Result JSON.")],
    answers: Annotated[Path | None, typer.Option(help="Answers to grade: rows with prompt_id (the question's id) and response.", exists=True, dir_okay=False)] = None,
    by: Annotated[str | None, typer.Option(help="Group the answers by this field (e.g. model).")] = None,
    reference_field: Annotated[str, typer.Option(help="Question field holding the reference answer.")] = "reference",
    examples_field: Annotated[str, typer.Option(help="Question field holding the scored examples.")] = "examples",
    run_dir: Annotated[Path | None, typer.Option(help="Run directory (store, call cache). Default: OUTPUT.run/")] = None,
    sample_config: Annotated[Path | None, typer.Option(help="Generate the answers: YAML/TOML with `longreward sample`'s options (its `sample:` section if present).", exists=True, dir_okay=False)] = None,
    policy_provider: Annotated[str | None, typer.Option(help="Generate the answers from this policy provider (openai_compatible, llama_cpp, vllm, transformers, dry_run).")] = None,
    policy_model: Annotated[str | None, typer.Option(help="Generate the answers with this policy model.")] = None,
    policy_base_url: Annotated[list[str] | None, typer.Option(help="Policy endpoint (repeatable).")] = None,
    policy_dry_run: Annotated[bool, typer.Option("--policy-dry-run", help="Generate placeholder answers with the offline dry-run policy.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    borrowed: dict[str, Any] | None = None,
) -> None:
    """Grade answers against reference answers, 1–10 with optional scored examples per question, reported as mean × 10 (as LongBench-Chat does). Answers from a file, or generated from a policy through the sample machinery (one per question, temperature 0, unless the sample config says otherwise)."""
    from ..eval.reference import ReferenceOptions, evaluate_reference

    options = _options(borrowed or {})
    ref = ReferenceOptions(reference_field=reference_field, examples_field=examples_field, by=by)
    generate = any([sample_config, policy_provider, policy_model, policy_base_url,
                    policy_dry_run])
    if answers is not None and generate:
        raise typer.BadParameter("give --answers or the policy options to generate them, "
                                 "not both")
    if answers is None and not generate:
        raise typer.BadParameter("give --answers FILE, or a policy to generate the answers "
                                 "(--policy-model/--policy-base-url, --policy-dry-run or "
                                 "--sample-config)")
    sample_options = None
    if generate:
        sample_options = _sample_options(sample_config, {
            "policy.provider": "dry_run" if policy_dry_run else policy_provider,
            "policy.model": policy_model, "policy.base_urls": policy_base_url},
            options.fields)
    dry_run_banner(options.judge.provider)

    async def main() -> dict[str, Any]:
        from ..reward.scorer import build_client

        client = build_client(options)
        try:
            with stage_progress("eval: grading", console=err, enabled=progress,
                                stats=client.snapshot) as bar:
                return await evaluate_reference(
                    questions, output, options, ref, answers_path=answers,
                    sample_options=sample_options, run_dir=run_dir, client=client,
                    on_start=lambda total, done: bar.start(total, done),
                    on_answer=lambda: bar.advance())
        finally:
            await client.aclose()

    result = _run(main)
    from ..io.files import rejected_path

    for r in _read_rejected(rejected_path(output))[:20]:
        err.print(f"[red]rejected[/] record {r['record']}, field '{r.get('field')}': "
                  f"{r['error']}")
    rows = []
    for name, g in result["groups"].items():
        rows.append((f"{name}: score (×10)", f"{_num(g['score_x10'])}  ({g['graded']} graded, "
                                            f"{g['unscored']} unscored)"))
    cost = result["cost"]
    rows += [("questions", result["questions"]), ("answers", result["answers"]),
             ("records rejected", result["rejected"]),
             ("judge calls (sent / cached)", f"{cost['requests']} / {cost['cache_hits']}"),
             ("output", str(output))]
    err.print(summary_table("longreward eval reference", rows))
    raise typer.Exit(result["exit_code"])


def _sample_options(config: Path | None, flags: dict[str, Any], fields: Any) -> Any:
    """``sample``'s options for generating one answer per question: n=1 and temperature 0
    unless the config file says otherwise; the questions file's field names."""
    from ..config import deep_merge, load_config_file
    from ..preference.sampling import SampleOptions
    from ._common import flag_overrides

    base: dict[str, Any] = {"n": 1, "temperature": 0.0,
                            "fields": {"id": fields.id, "context": fields.context,
                                       "query": fields.query}}
    if config is not None:
        data = load_config_file(config)
        section = data.get("sample")
        base = deep_merge(base, section if isinstance(section, dict) else data)
    return _validated(SampleOptions, deep_merge(base, flag_overrides(**flags)))
