"""``longreward eval agreement | facts | reference``.

The judge and scoring flags are ``longreward score``'s own parameters, borrowed (declaration,
help and default) rather than declared again, and mapped to options by the same
``score_overrides``; so ``eval`` takes exactly the flags ``score`` takes, and a flag added to
``score`` reaches ``eval`` too.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
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


def _ci(m: Any) -> str:
    lo, hi = m.ci
    return "–" if lo is None or hi is None else f"{100 * lo:.0f}–{100 * hi:.0f}"


def agreement_table(result: Any) -> Table:
    """The console table of an agreement result (an ``AgreementResult``)."""
    subset = ""
    if result.subset is not None:
        subset = f" (a subset: {result.prompts} of {result.subset.prompts_in_data} prompts)"
    t = Table(title=f"agreement with human labels: {result.pairs} pairs, "
                    f"{result.prompts} prompts{subset}", title_justify="left")
    t.add_column("method", no_wrap=True)
    for col in ("accuracy", "95% CI", "n", "a/d/t/n", "calls", "prompt tokens"):
        t.add_column(col, justify="right")

    def add(name: str, m: Any, calls: Any = "", tokens: Any = "") -> None:
        t.add_row(name, _pct(m.accuracy), _ci(m), str(m.n),
                  f"{m.agree}/{m.disagree}/{m.ties}/{m.abstained}", str(calls), str(tokens))

    group = None
    for m in result.methods:
        if group is not None and m.group != group and m.group != "dimension":
            t.add_section()
        group = m.group
        cost = m.cost
        shown = group != "dimension" and cost is not None
        add(f"  {m.name}" if group == "dimension" else m.name, m,
            cost.calls if shown else "", f"{cost.prompt_tokens:,}" if shown else "")
    if result.ablation:
        t.add_section()
    for m in result.ablation:
        delta = "" if m.delta is None else f" ({100 * m.delta:+.1f})"
        add(f"− {m.removed}{delta}", m, 0, 0)
    t.caption = (f"a/d/t/n: agree, disagree, tie, no verdict. Ties: {result.tie_rule} — "
                 f"{result.tie_rule_text}. 95% CI: "
                 f"bootstrap over prompts, {result.bootstrap.resamples} resamples, "
                 f"seed {result.bootstrap.seed}. − DIM: the reward without it, "
                 f"recombined from stored scores ({result.ablation_requests} judge calls, "
                 f"{result.ablation_seconds * 1000:.1f} ms). calls: judge calls the method "
                 f"needs (sent + found in the cache). Wall time {result.seconds:.1f} s.")
    return t


def diagnostics_table(result: Any) -> Table:
    """The diagnostics of an agreement result, each with its reading."""
    t = Table(title="when to trust the reward", title_justify="left")
    t.add_column("check", no_wrap=True)
    t.add_column("value", justify="right")
    t.add_column("n", justify="right")
    t.add_column("reading")
    for d in result.diagnostics:
        value = "–" if d.value is None else f"{d.value:.2f}"
        mark = "[yellow]![/] " if d.status == "warn" else ""
        t.add_row(d.name, value, str(d.n), mark + d.reading)
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
    prompts: Annotated[str | None, typer.Option(help="Evaluate only these prompts (comma-separated prompt ids; a pairwise row's id when it has no prompt_id). Runs on different subsets share the run directory: answers and calls already made are reused.")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N prompts (file order, after --prompts); rerun with a larger N to go on.", min=1)] = None,
    self_consistency: Annotated[int, typer.Option(help="Diagnostic: rescore this many answers (those of the first pairs) at --self-consistency-temperature and report the reward's spread. Costs the reward's calls for them, times the repeats. 0: off.", min=0)] = 0,
    self_consistency_repeats: Annotated[int, typer.Option(help="Rescorings per answer for --self-consistency.", min=2)] = 3,
    self_consistency_temperature: Annotated[float, typer.Option(help="Judge temperature of the rescorings.")] = 0.7,
    listwise: Annotated[bool, typer.Option("--listwise", help="Also run listwise selection as a mode on the same pairs: the judge sees each prompt's answers at once, in two orders, and names the best and the worst (2 calls per group of answers). See docs/listwise.md.")] = False,
    listwise_group_size: Annotated[int | None, typer.Option(help="Listwise: answers per judge call; more run as a tournament.", min=3)] = None,
    listwise_max_prompt_tokens: Annotated[int | None, typer.Option(help="Listwise: a request longer than this shows evidence excerpts instead of the whole document.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    borrowed: dict[str, Any] | None = None,
) -> None:
    """Agreement of the reward, each dimension, the leave-one-out rewards and the baselines with human preference labels. Scores through the resumable score stage: a rerun makes no judge call."""
    from ..eval.agreement import AgreementOptions, evaluate_agreement

    options = _options(borrowed or {})
    agreement = _validated(AgreementOptions, {
        "label_field": label_field, "min_gap": min_gap, "higher_is_better": not lower_is_better,
        "response_a_field": response_a_field, "response_b_field": response_b_field,
        "baselines": [] if baselines.strip() == "none" else
        [b.strip() for b in baselines.split(",") if b.strip()],
        "consensus_pool": str(consensus_pool) if consensus_pool else None,
        "ties": ties, "bootstrap": bootstrap, "seed": seed,
        "prompts": None if prompts is None else
        [p.strip() for p in prompts.split(",") if p.strip()],
        "limit": limit, "self_consistency": self_consistency,
        "self_consistency_repeats": self_consistency_repeats,
        "self_consistency_temperature": self_consistency_temperature,
        "listwise": {k: v for k, v in {"group_size": listwise_group_size,
                                       "max_prompt_tokens": listwise_max_prompt_tokens}.items()
                     if v is not None} if listwise else None})
    result = _run_scoring("eval: scoring", options, progress, functools.partial(
        evaluate_agreement, data, output, options, agreement, run_dir=run_dir))
    _report_rejected(output)
    if result.pairs == 0:
        err.print("[yellow]warning:[/] no pair with a human preference was formed: check "
                  "--label-field (and --min-gap for pointwise data)")
    err.print(agreement_table(result))
    err.print(diagnostics_table(result))
    for note in result.notes:
        err.print(f"[yellow]note:[/] {note}")
    err.print(f"results: {output}; scored answers: {result.scored}")
    raise typer.Exit(result.exit_code)


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


def _run_scoring(label: str, options: Any, progress: bool,
                 evaluate: Callable[..., Awaitable[Any]]) -> Any:
    """Run ``evaluate(scorer=, on_start=, on_answer=)`` (an eval that scores through the score
    stage) with a scorer of ``options`` and a progress bar, closing the scorer after."""
    from ..reward.scorer import LongReward, build_client

    dry_run_banner(options.judge.provider)

    async def main() -> Any:
        scorer = LongReward(build_client(options), options=options)
        try:
            with stage_progress(label, console=err, enabled=progress,
                                stats=scorer.client.snapshot) as bar:
                return await evaluate(scorer=scorer,
                                      on_start=lambda total, done: bar.start(total, done),
                                      on_answer=lambda _row: bar.advance())
        finally:
            await scorer.aclose()

    return _run(main)


def _report_rejected(output: Path) -> None:
    """Print the records an eval rejected (listed in ``OUTPUT.rejected.jsonl``)."""
    from ..errors import RecordError
    from ..io.files import rejected_path

    report_errors([RecordError(r["record"], r.get("field"), r["error"])
                   for r in _read_rejected(rejected_path(output))], rejected_path(output))


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


# --------------------------------------------------------------------------- robustness


def robustness_table(result: Any) -> Table:
    """The console table of a ``RobustnessResult``: one row per attack class."""
    t = Table(title=f"robustness: {result.answers} answers attacked, {result.variants} "
                    "variants", title_justify="left")
    t.add_column("class", no_wrap=True)
    for col in ("n", "win rate", "+gain", "mean Δ", "share", "calls/sent", "tokens", "gate"):
        t.add_column(col, justify="right")

    def ci(interval: Any, fmt: str, scale: float = 1.0) -> str:
        low, high = interval
        return "" if low is None else f"\n{fmt.format(scale * low)}–{fmt.format(scale * high)}"

    for c in result.classes:
        cost = c.cost
        t.add_row(
            c.name, str(c.variants) + (f"\n{c.no_verdict} no verdict" if c.no_verdict else ""),
            "–" if c.win_rate is None else f"{100 * c.win_rate:.0f}%" + ci(
                c.win_rate_ci, "{:.0f}", 100),
            _num(c.mean_positive_gain) + ci(c.mean_positive_gain_ci, "{:.2f}"),
            _num(c.mean_delta, "{:+.2f}"), _num(c.reward_share),
            f"{cost.calls}/{cost.requests}" if cost else "–",
            f"{cost.prompt_tokens + cost.completion_tokens:,}" if cost else "–",
            "[red]FAIL[/]" if c.failed else "ok")
    given = {k: v for k, v in result.thresholds.items() if v is not None}
    t.caption = ("win rate: variants whose reward is above their original's; mean +gain: the "
                 "mean reward gained by those (95% CI below each); share: variant reward / "
                 "original reward; calls: judge calls the class needs (sent + from the cache); "
                 "tokens: sent, in + out. CI: bootstrap "
                 f"over attacked answers, {result.bootstrap.resamples} resamples. Gate: "
                 + (", ".join(f"{k}={v:g}" for k, v in given.items()) if given else
                    "none given (--max-win-rate, --max-gain, --max-master-key-reward)"))
    return t


@eval_app.command("robustness")
@with_flags_of(score_command, SCORE_FLAGS)
def robustness_command(
    answers: Annotated[Path, typer.Argument(help="Answers to attack: candidate rows (flat or grouped, as `score` reads them) or a scored file (its documents come from its run directory, or --documents-from / --prompts).", exists=True, dir_okay=False)],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Result JSON. The scored originals and variants go to STEM.scored.jsonl beside it.")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Run directory (store, call cache). Default: OUTPUT.run/")] = None,
    prompts: Annotated[Path | None, typer.Option("--prompts", help="Prompts file (id, context, query) for answer rows that carry only a prompt_id.", exists=True, dir_okay=False)] = None,
    documents_from: Annotated[Path | None, typer.Option(help="Run directory whose store holds the documents of a scored input file (default: INPUT.run/).", exists=True, file_okay=False)] = None,
    classes: Annotated[str, typer.Option(help="Comma-separated attack classes: forgery, self_praise, grader_note, fake_turn, master_key, layout, padding, truncation; or 'all'.")] = "all",
    variants_per_class: Annotated[int, typer.Option(help="Variants of each answer in each class.", min=1)] = 3,
    sample: Annotated[int | None, typer.Option(help="Attack a seeded sample of this many answers (default: every answer).", min=1)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the variants, the sample and the bootstrap.")] = 0,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% intervals (0: none).", min=0)] = 1000,
    max_win_rate: Annotated[float | None, typer.Option(help="Gate: exit 3 when a class's win rate is above this (0–1), e.g. 0.10.")] = None,
    max_gain: Annotated[float | None, typer.Option(help="Gate: exit 3 when a class's mean positive gain is above this (reward points), e.g. 0.25.")] = None,
    max_master_key_reward: Annotated[float | None, typer.Option(help="Gate: exit 3 when a master key gets a reward above this, e.g. 1.0.")] = None,
    write_variants: Annotated[Path | None, typer.Option(help="Also write the originals and variants as a candidates file, for another version of `longreward score` to score.")] = None,
    score: Annotated[bool, typer.Option("--score/--no-score", help="--no-score: only build the variants (with --write-variants); no judge call.")] = True,
    scored: Annotated[Path | None, typer.Option(help="Read the figures from this scored file of the variants (made from --write-variants by any `longreward score`) instead of scoring them.", exists=True, dir_okay=False)] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    borrowed: dict[str, Any] | None = None,
) -> None:
    """Attack the answers with the suite of known reward hacks (verdict forgery, self-praise, notes to the grader, fake turn ends, master keys, layout, padding, truncation), score every variant with your judge, and report per class how often a variant beats its original, by how much, and at what cost. Exit 3 when a class passes a --max-* gate, so it can guard an RL run. Resumable; a rerun makes no judge call."""
    from ..eval.robustness import (
        RobustnessOptions,
        analyse_scored,
        evaluate_robustness,
        plan_variants,
        read_answers,
        write_variants_file,
    )

    options = _options(borrowed or {})
    robustness = _validated(RobustnessOptions, {
        "classes": [c.strip() for c in classes.split(",") if c.strip()],
        "variants_per_class": variants_per_class, "sample": sample, "seed": seed,
        "bootstrap": bootstrap, "max_win_rate": max_win_rate, "max_gain": max_gain,
        "max_master_key_reward": max_master_key_reward})
    if not score and write_variants is None:
        raise typer.BadParameter("--no-score builds variants only to write them: give "
                                 "--write-variants FILE")
    if score and output is None:
        raise typer.BadParameter("give -o/--output FILE for the result (or --no-score "
                                 "--write-variants FILE to only write the variants)")
    if write_variants is not None:
        records, rejected = read_answers(answers, options.fields, prompts_path=prompts,
                                         documents_from=documents_from)
        plan = plan_variants(records, robustness, rejected)
        report_errors(plan.rejected, None)
        n = write_variants_file(plan, write_variants)
        err.print(f"variants: {n} answers ({len(plan.answer_ids)} originals, "
                  f"{len(plan.variants)} variants) written to {write_variants}")
        if not score:
            raise typer.Exit(1 if plan.rejected else 0)
    assert output is not None
    if scored is not None:
        result = analyse_scored(answers, scored, output, robustness, fields=options.fields,
                                prompts_path=prompts, documents_from=documents_from)
    else:
        result = _run_scoring("eval: robustness", options, progress, functools.partial(
            evaluate_robustness, answers, output, options, robustness, run_dir=run_dir,
            prompts_path=prompts, documents_from=documents_from))
    _report_rejected(output)
    err.print(robustness_table(result))
    for note in result.notes:
        err.print(f"[yellow]note:[/] {note}")
    for name, why in result.failed.items():
        err.print(f"[red]gate:[/] {name}: {'; '.join(why)}")
    if result.this_run:
        err.print(f"this run: {result.this_run['requests']} judge requests sent, "
                  f"{result.this_run['cache_hits']} answered from the run store")
    err.print(f"results: {output}; scored answers: {result.scored}")
    raise typer.Exit(result.exit_code)
