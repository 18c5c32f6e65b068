"""``longreward eval agreement``: how often does the reward prefer the answer people preferred?

The LongReward paper's central evidence (§4.3) is agreement with human preference: 66.2% for
the reward against 58.3% for a short-context reward model and 57.1% for pairwise judging, and
57.8% with faithfulness or completeness left out. This module measures the same on the user's
labels:

1. The data is read as pairs with a human label: pairwise rows ``{id, context, query,
   response_a, response_b, label: a|b|tie}``, or pointwise rows with a ``prompt_id`` and a
   human score, from which every within-prompt pair whose scores differ by more than
   ``min_gap`` is formed.
2. Every answer is scored by the normal resumable score stage (``score_file``) in the eval's
   run directory, so a rerun makes no judge call and a crash loses nothing.
3. Accuracy of the reward and of each dimension, with the tie rule and the bootstrap interval
   of :mod:`._stats`.
4. Leave-one-dimension-out: the reward recombined (``combine_reward``) from the stored scores
   of the other dimensions, with no judge call.
5. Baselines (:mod:`.baselines`), each only when asked for; the judged ones use the run store
   as their call cache, so they too cost nothing on a rerun.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import ScoreOptions
from ..errors import RecordError
from ..io.files import default_run_dir, iter_rows, read_rows, write_rejected, write_rows
from ..io.records import FieldMap, PromptRecord, group_records
from ..reward.dimensions import DimensionResult, combine_reward
from ..reward.scorer import LongReward, build_client
from ..stages.runner import fingerprint
from ..stages.score import ScoreSummary, score_file, usage_by_dimension
from . import baselines as bl
from ._run import cached_calls, counters, tag_costs, write_result
from ._stats import TIE_RULES, Accuracy, Bootstrap, TieRule, Verdict, accuracy, verdict_from_scores

RESULT_KIND = "longreward.eval.agreement"


class AgreementOptions(BaseModel):
    """How the human labels are read and how agreement is counted."""

    model_config = ConfigDict(extra="forbid")

    #: pairwise rows: the label ("a", "b" or "tie"); pointwise rows: the human score
    label_field: str = "label"
    response_a_field: str = "response_a"
    response_b_field: str = "response_b"
    #: pointwise: a pair is formed when the two human scores differ by more than this
    min_gap: float = Field(0.0, ge=0)
    #: pointwise: whether a higher human score means a better answer
    higher_is_better: bool = True
    ties: TieRule = "half"
    bootstrap: int = Field(1000, ge=0)
    seed: int = 0
    baselines: list[str] = Field(default_factory=lambda: ["length", "consensus"])
    #: extra answers per prompt (rows with prompt_id and response) for the consensus baseline
    consensus_pool: str | None = None

    @field_validator("baselines")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        if "all" in v:
            return list(bl.BASELINES)
        bad = [b for b in v if b not in bl.BASELINES]
        if bad:
            raise ValueError(f"unknown baseline(s) {bad}; choose from {list(bl.BASELINES)} "
                             "or all")
        return list(dict.fromkeys(v))


@dataclass
class HumanPair:
    id: str
    prompt_id: str
    a: str  # answer ids
    b: str
    label: Literal["a", "b", "tie"]
    #: pointwise: the human score difference (a − b); None for pairwise labels
    gap: float | None = None


@dataclass
class AgreementData:
    kind: Literal["pairwise", "pointwise"]
    records: list[PromptRecord]
    pairs: list[HumanPair]
    rejected: list[RecordError] = field(default_factory=list)
    #: pointwise: within-prompt pairs not formed because the scores differ by ≤ min_gap
    below_gap: int = 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_agreement_data(path: str | Path, options: AgreementOptions,
                        fields: FieldMap | None = None) -> AgreementData:
    """Read pairwise or pointwise rows (told apart by the ``response_a`` field of the first good
    row). Bad rows are rejected by name; the others go on."""
    f = fields or FieldMap()
    items = list(iter_rows(path, id_field=f.id))
    first = next((row for _, row in items if isinstance(row, dict)), None)
    if first is not None and options.response_a_field in first:
        return _pairwise(items, options, f)
    return _pointwise(items, options, f)


def _unique(errors: Iterable[RecordError]) -> list[RecordError]:
    seen: dict[tuple[str, str, str], RecordError] = {}
    for e in errors:
        seen.setdefault((e.record, e.field, e.reason), e)
    return list(seen.values())


def _pairwise(items: list[tuple[str, Any]], o: AgreementOptions, f: FieldMap) -> AgreementData:
    """Each pairwise row becomes two flat answer rows (``ID/a``, ``ID/b``) read by the one
    record reader, so a bad document or question is reported as for ``score``."""
    rejected: list[RecordError] = []
    flat: list[tuple[str, dict[str, Any] | RecordError]] = []
    wanted: list[tuple[str, str, Literal["a", "b", "tie"]]] = []
    for label, row in items:
        if isinstance(row, RecordError):
            rejected.append(row)
            continue
        rid = row.get(f.id)
        if not isinstance(rid, (str, int)) or isinstance(rid, bool) or not str(rid).strip():
            rejected.append(RecordError(label, f.id, "missing, empty or not a string/integer id"))
            continue
        raw = row.get(o.label_field)
        human = raw.strip().lower() if isinstance(raw, str) else None
        if human not in ("a", "b", "tie"):
            rejected.append(RecordError(label, o.label_field, f"must be \"a\", \"b\" or \"tie\", "
                                        f"got {raw!r}; name the label column with --label-field"))
            continue
        missing = [k for k in (o.response_a_field, o.response_b_field) if k not in row]
        if missing:
            rejected.append(RecordError(label, missing[0], "missing: a pairwise row needs both "
                                        "answers (name them with --response-a-field/-b-field)"))
            continue
        common = {k: v for k, v in row.items()
                  if k not in (o.response_a_field, o.response_b_field, o.label_field, f.id,
                               f.response)}
        for side, key in (("a", o.response_a_field), ("b", o.response_b_field)):
            flat.append((label, {**common, f.id: f"{rid}/{side}", f.response: row[key],
                                 "side": side}))
        wanted.append((str(rid), label, human))  # type: ignore[arg-type]
    records: list[PromptRecord] = []
    for item in group_records(flat, f):
        (rejected.append(item) if isinstance(item, RecordError) else records.append(item))
    prompt_of = {c.id: r.prompt_id for r in records for c in r.candidates}
    pairs = [HumanPair(rid, prompt_of[f"{rid}/a"], f"{rid}/a", f"{rid}/b", human)
             for rid, _, human in wanted if f"{rid}/a" in prompt_of and f"{rid}/b" in prompt_of]
    return AgreementData("pairwise", records, pairs, _unique(rejected))


def _pointwise(items: list[tuple[str, Any]], o: AgreementOptions, f: FieldMap) -> AgreementData:
    rejected: list[RecordError] = []
    records: list[PromptRecord] = []
    for item in group_records(items, f):
        if isinstance(item, RecordError):
            rejected.append(item)
            continue
        good = []
        for c in item.candidates:
            value = c.extra.get(o.label_field)
            if _is_number(value):
                good.append(c)
            elif value is None:
                rejected.append(RecordError(c.id, o.label_field, "missing: each answer needs "
                                            "its human score (name the column with "
                                            "--label-field)"))
            else:
                rejected.append(RecordError(c.id, o.label_field,
                                            f"must be a number (the human score), got {value!r}"))
        if good:
            records.append(PromptRecord(item.prompt_id, item.context, item.query, good,
                                        item.label))
    pairs: list[HumanPair] = []
    below = 0
    for rec in records:
        cands = rec.candidates
        for i in range(len(cands)):
            for j in range(i + 1, len(cands)):
                a, b = cands[i], cands[j]
                gap = float(a.extra[o.label_field]) - float(b.extra[o.label_field])
                if abs(gap) <= o.min_gap:
                    below += 1
                    continue
                a_better = (gap > 0) == o.higher_is_better
                pairs.append(HumanPair(f"{a.id}~{b.id}", rec.prompt_id, a.id, b.id,
                                       "a" if a_better else "b", gap))
    return AgreementData("pointwise", records, pairs, rejected, below)


# --------------------------------------------------------------------------- running


def scored_path_for(output: str | Path) -> Path:
    """Where the scored answers go: ``results.json`` → ``results.scored.jsonl``."""
    p = Path(output)
    return p.with_name(f"{p.stem}.scored.jsonl")


def _answers_rows(records: list[PromptRecord]) -> list[dict[str, Any]]:
    """The answers to score, one grouped row per prompt (the document once)."""
    return [{"id": r.prompt_id, "context": r.context, "query": r.query,
             "candidates": [{"id": c.id, "response": c.response, **c.extra}
                            for c in r.candidates]}
            for r in records]


def _cost_key(data: AgreementData) -> str:
    """The run store key of this evaluation's costs: one per set of answers and pairs, so
    another data file evaluated in the same run directory keeps its own."""
    ids = sorted(c.id for r in data.records for c in r.candidates)
    return "eval.costs." + fingerprint(ids, sorted(p.id for p in data.pairs))


def _read_pool(path: str | Path, f: FieldMap) -> dict[str, list[str]]:
    rows, _ = read_rows(path, id_field=f.id)
    pool: dict[str, list[str]] = {}
    for row in rows:
        pid, text = row.get(f.prompt_id), row.get(f.response)
        if isinstance(text, str) and text.strip() and pid is not None:
            pool.setdefault(str(pid), []).append(text)
    return pool


def _ablation(rows: dict[str, dict[str, Any]], dims: list[str],
              weights: dict[str, float] | None, unscored: str = "no_reward",
              ) -> tuple[dict[str, dict[str, float | None]], float]:
    """Each answer's reward without each dimension, recombined from its stored scores by the
    reward's own ``combine_reward`` under the run's rule for unscored dimensions (a
    dimension the answer made unreadable is stored at its minimum, a number); no judge call.
    Returns the rewards and the seconds taken."""
    start = time.perf_counter()
    out: dict[str, dict[str, float | None]] = {d: {} for d in dims}
    for aid, row in rows.items():
        scores = row.get("scores") or {}
        for d in dims:
            kept = {n: DimensionResult(n, scores.get(n)) for n in dims if n != d}
            w = None if weights is None else {n: weights.get(n, 0.0) for n in kept}
            out[d][aid] = combine_reward(kept, w, unscored=unscored)[0]
    return out, time.perf_counter() - start


def method_costs(store: Any, key: str, by_tag: dict[str, dict[str, int]], dims: list[str],
                 baselines: list[str]) -> dict[str, dict[str, int]]:
    """What each method cost: judge requests sent and their tokens, summed over the runs of
    this evaluation (kept in the run store under ``key``). A rerun sends nothing — its answers
    are resumed and its baseline calls come from the cache — yet each method still shows what
    it cost; ``cache_hits`` is this run's. (A run killed mid-way keeps nothing; the calls it
    made come from the cache next time and show as cache hits.)"""
    per_dim = usage_by_dimension(by_tag)  # the score stage's own grouping of tags
    now = {d: counters(per_dim.get(d, {})) for d in dims}
    now["reward"] = counters(*now.values())
    for b in baselines:
        now[b] = tag_costs(by_tag, [bl.TAGS[b]]) if b in bl.TAGS else counters()
    kept = store.get_meta(key) or {}
    paid = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens")
    total = {name: {k: c[k] + int((kept.get(name) or {}).get(k, 0)) for k in paid}
             for name, c in now.items()}
    if any(c["requests"] for c in now.values()):
        store.set_meta(key, total)
    for name, c in total.items():
        c["calls"] = c["requests"]
        c["cache_hits"] = now[name]["cache_hits"]
    return total


async def _judged_baselines(which: list[str], scorer: LongReward, data: AgreementData,
                            rows: dict[str, dict[str, Any]], counted: list[HumanPair],
                            ) -> tuple[dict[str, list[Verdict]], dict[str, Any]]:
    import asyncio

    by_id = {c.id: (r, c) for r in data.records for c in r.candidates}
    settings = scorer.settings
    verdicts: dict[str, list[Verdict]] = {}
    details: dict[str, Any] = {}

    def language(aid: str) -> str:
        return (rows.get(aid) or {}).get("language") or "en"  # the scorer's choice

    if "holistic" in which:
        needed = list(dict.fromkeys(x for p in counted for x in (p.a, p.b)))
        results = await asyncio.gather(*(bl.holistic_score(
            settings, language=language(aid), context=by_id[aid][0].context,
            query=by_id[aid][0].query, response=by_id[aid][1].response) for aid in needed))
        score = {aid: r.score for aid, r in zip(needed, results, strict=True)}
        verdicts["holistic"] = [verdict_from_scores(score[p.a], score[p.b]) for p in counted]
        details["holistic"] = {aid: {"score": r.score, "unscored": r.unscored_reason}
                               for aid, r in zip(needed, results, strict=True)}
    if "pairwise" in which:
        asked = await asyncio.gather(*(bl.pairwise_verdict(
            settings, language=language(p.a), context=by_id[p.a][0].context,
            query=by_id[p.a][0].query, answer_a=by_id[p.a][1].response,
            answer_b=by_id[p.b][1].response) for p in counted))
        verdicts["pairwise"] = [x["verdict"] for x in asked]
        details["pairwise"] = {p.id: {k: v for k, v in x.items() if k != "usage"}
                               for p, x in zip(counted, asked, strict=True)}
    return verdicts, details


async def evaluate_agreement(
    data_path: str | Path,
    output_path: str | Path,
    options: ScoreOptions,
    agreement: AgreementOptions | None = None,
    *,
    run_dir: str | Path | None = None,
    scorer: LongReward | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_answer: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Score the answers of ``data_path`` and measure agreement with its human labels; write
    the result to ``output_path`` (JSON) and return it. ``options.fields`` names the data's
    fields. A coroutine: ``asyncio.run(evaluate_agreement(...))``."""
    agreement = agreement or AgreementOptions()
    started = time.perf_counter()
    output_path = Path(output_path)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(output_path)
    data = read_agreement_data(data_path, agreement, options.fields)
    write_rejected(output_path, data.rejected)

    # The answers file is ours, in the default field names; the stage scores it resumably.
    run_dir.mkdir(parents=True, exist_ok=True)
    answers_path = run_dir / "answers.jsonl"
    write_rows(answers_path, _answers_rows(data.records))
    score_options = options.model_copy(update={"fields": FieldMap()})
    own = scorer is None
    if scorer is None:
        scorer = LongReward(build_client(score_options), options=score_options)
    scored_path = scored_path_for(output_path)
    try:
        summary: ScoreSummary = await score_file(
            answers_path, scored_path, score_options, run_dir=run_dir, scorer=scorer,
            on_start=on_start, on_answer=on_answer)
        wanted = {c.id for r in data.records for c in r.candidates}
        rows = {str(r["id"]): r for r in read_rows(scored_path)[0] if str(r["id"]) in wanted}

        counted = [p for p in data.pairs if p.label != "tie"]
        labels = [p.label for p in counted]
        boot = Bootstrap([p.prompt_id for p in counted], resamples=agreement.bootstrap,
                         seed=agreement.seed)

        def reward_of(aid: str, dim: str | None = None) -> float | None:
            row = rows.get(aid)
            if row is None:
                return None
            return row.get("reward") if dim is None else (row.get("scores") or {}).get(dim)

        methods: dict[str, list[Verdict]] = {
            "reward": [verdict_from_scores(reward_of(p.a), reward_of(p.b)) for p in counted]}
        dims = list(score_options.dimensions)
        for d in dims:
            methods[d] = [verdict_from_scores(reward_of(p.a, d), reward_of(p.b, d))
                          for p in counted]

        requests_before = scorer.client.stats.total.requests
        ablated, ablation_seconds = _ablation(rows, dims, score_options.weights,
                                              score_options.unscored_dimension)
        ablation_requests = scorer.client.stats.total.requests - requests_before
        ablation = {f"without {d}": [verdict_from_scores(ablated[d].get(p.a), ablated[d].get(p.b))
                                     for p in counted] for d in dims} if len(dims) > 1 else {}

        baseline: dict[str, list[Verdict]] = {}
        baseline_details: dict[str, Any] = {}
        notes: list[str] = []
        which = agreement.baselines
        if "length" in which:
            text = {c.id: c.response for r in data.records for c in r.candidates}
            baseline["length"] = [bl.length_verdict(text[p.a], text[p.b]) for p in counted]
        if "consensus" in which:
            pool = (_read_pool(agreement.consensus_pool, options.fields)
                    if agreement.consensus_pool else {})
            if all(len(r.candidates) + len(pool.get(r.prompt_id) or []) < 3
                   for r in data.records):
                # Two answers are each other's only neighbour: every pair ties, and a row
                # of 50% would read as a finding.
                notes.append("consensus left out: every prompt has 2 answers, and each is "
                             "then the other's only neighbour (every pair ties); give more "
                             "samples per prompt with --consensus-pool FILE")
            else:
                score: dict[str, float] = {}
                for rec in data.records:
                    values = bl.consensus_scores([c.response for c in rec.candidates],
                                                 pool.get(rec.prompt_id))
                    score.update(zip([c.id for c in rec.candidates], values, strict=True))
                baseline["consensus"] = [verdict_from_scores(score[p.a], score[p.b])
                                         for p in counted]
        judged = [b for b in which if b in bl.JUDGED]
        with cached_calls(scorer.client, run_dir) as store:
            if judged and counted:
                got, baseline_details = await _judged_baselines(judged, scorer, data, rows,
                                                                counted)
                baseline.update(got)
            stats = scorer.client.snapshot()
            costs = method_costs(store, _cost_key(data), stats.get("by_tag", {}),
                                 score_options.dimensions, list(baseline))
    finally:
        if own:
            await scorer.aclose()

    def acc(name: str, verdicts: list[Verdict]) -> Accuracy:
        return accuracy(name, verdicts, labels, agreement.ties, boot)

    results_methods = []
    for group, table in (("reward", {"reward": methods["reward"]}),
                         ("dimension", {d: methods[d] for d in dims}),
                         ("baseline", baseline)):
        for name, verdicts in table.items():
            results_methods.append({**acc(name, verdicts).as_dict(), "group": group,
                                    "cost": costs.get(name)})
    reward_acc = results_methods[0]["accuracy"]
    ablation_rows = []
    for name, verdicts in ablation.items():
        a = acc(name, verdicts).as_dict()
        a["removed"] = name.split(" ", 1)[1]
        a["delta"] = (None if a["accuracy"] is None or reward_acc is None
                      else a["accuracy"] - reward_acc)
        ablation_rows.append(a)

    all_verdicts = {**methods, **ablation, **baseline}
    pair_rows = []
    for i, p in enumerate(counted):
        pair_rows.append({
            "id": p.id, "prompt_id": p.prompt_id, "a": p.a, "b": p.b, "label": p.label,
            "gap": p.gap, "reward_a": reward_of(p.a), "reward_b": reward_of(p.b),
            "verdicts": {m: v[i] for m, v in all_verdicts.items()},
        })
    result: dict[str, Any] = {
        "kind": RESULT_KIND,
        "version": 1,
        "data": str(data_path),
        "scored": str(scored_path),
        "run_dir": str(run_dir),
        "format": data.kind,
        "prompts": len(data.records),
        "answers": sum(len(r.candidates) for r in data.records),
        "pairs": len(counted),
        "human_ties_left_out": sum(1 for p in data.pairs if p.label == "tie"),
        "below_min_gap": data.below_gap,
        "rejected": len(data.rejected),
        "tie_rule": agreement.ties,
        "tie_rule_text": TIE_RULES[agreement.ties],
        "bootstrap": {"resamples": agreement.bootstrap, "seed": agreement.seed,
                      "level": boot.level, "unit": "prompt"},
        "dimensions": dims,
        "weights": score_options.weights,
        "judge": scorer.judge_identity,
        "methods": results_methods,
        "ablation": ablation_rows,
        "ablation_seconds": ablation_seconds,
        "ablation_requests": ablation_requests,
        "baseline_details": baseline_details,
        "notes": notes,
        "pair_details": pair_rows,
        "scoring": {"answers": summary.answers_total, "scored_now": summary.answers_scored,
                    "resumed": summary.answers_done_before,
                    "all_unscored": summary.all_unscored,
                    "internal_errors": summary.internal_errors},
        "stats": {k: v for k, v in stats.items() if k not in ("notices", "slowest_calls")},
        "slowest_calls": stats["slowest_calls"],
        "seconds": time.perf_counter() - started,
        "exit_code": 1 if (data.rejected or summary.exit_code) else 0,
        "options": {"agreement": agreement.model_dump(mode="json"),
                    "score": _public_options(score_options)},
    }
    write_result(output_path, result)
    return result


def _public_options(options: ScoreOptions) -> dict[str, Any]:
    from ..stages.score import score_output_settings

    return score_output_settings(options)
