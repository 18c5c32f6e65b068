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
6. Diagnostics (:mod:`.diagnostics`): position bias, length, ties, self-consistency (opt-in),
   dimension correlations, injection flags, each with its reading.

``--prompts``/``--limit`` evaluate part of the data; the parts share the run directory, so a
long run with a slow judge can be done piece by piece. The result is an ``AgreementResult``
(:mod:`._result`), written as JSON.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import ScoreOptions
from ..errors import RecordError, UsageError
from ..io.files import default_run_dir, iter_rows, read_rows, write_rejected, write_rows
from ..io.records import FieldMap, PromptRecord, group_records
from ..preference.listwise import LISTWISE_TAG, ListwiseOptions, select_listwise
from ..reward.dimensions import DimensionResult, combine_reward
from ..reward.scorer import LongReward, build_client
from ..stages.runner import fingerprint
from ..stages.score import ScoreSummary, score_file, usage_by_dimension
from ..store import cached_calls
from . import baselines as bl
from . import diagnostics as diag
from ._result import (
    AgreementResult,
    BootstrapInfo,
    Diagnostic,
    MethodAccuracy,
    MethodCost,
    PairVerdicts,
    ScoringSummary,
    Subset,
)
from ._run import counters, tag_costs
from ._stats import TIE_RULES, Bootstrap, TieRule, Verdict, accuracy, verdict_from_scores
from .diagnostics import mean_abs_gap, self_consistency


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
    #: evaluate only these prompts (their ids: ``prompt_id``, or a pairwise row's own id)
    prompts: list[str] | None = None
    #: evaluate only the first N prompts of the data (after ``prompts``), in file order; a
    #: later run with a larger N resumes from these (answers and calls are kept)
    limit: int | None = Field(None, ge=1)
    #: self-consistency: rescore this many answers (those of the first labelled pairs) at
    #: ``self_consistency_temperature``, ``self_consistency_repeats`` times (0: not measured;
    #: it costs that many times the reward's calls for those answers)
    self_consistency: int = Field(0, ge=0)
    self_consistency_repeats: int = Field(3, ge=2)
    self_consistency_temperature: float = Field(0.7, gt=0)
    #: listwise selection as a mode beside the reward (None: not run): the judge sees each
    #: prompt's answers at once and names the best and the worst (``preference.listwise``)
    listwise: ListwiseOptions | None = None

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


#: the mode row of an evaluation scored with ``verdicts: expected``
INTEGER_MODE = "integer verdicts"


def integer_rows(rows: dict[str, dict[str, Any]], dims: list[str],
                 weights: dict[str, float] | None, unscored: str = "no_reward",
                 ) -> dict[str, dict[str, Any]] | None:
    """The rows as integer verdicts would have scored them, from the same replies: each
    weighed dimension's integer (``details.<dim>.verdict.integer``), the reward recombined by
    ``combine_reward``; no judge call. None when no row was weighed (``verdicts: integer``),
    so the mode row appears only where it compares something."""
    if not any(((row.get("details") or {}).get(d) or {}).get("verdict")
               for row in rows.values() for d in dims):
        return None
    out = {}
    for aid, row in rows.items():
        scores = dict(row.get("scores") or {})
        for d in dims:
            verdict = ((row.get("details") or {}).get(d) or {}).get("verdict") or {}
            if scores.get(d) is not None and verdict.get("integer") is not None:
                scores[d] = float(verdict["integer"])
        kept = {n: DimensionResult(n, scores.get(n)) for n in dims}
        reward = combine_reward(kept, weights, unscored=unscored)[0]
        out[aid] = {**row, "scores": scores, "reward": reward}
    return out


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
    tags = {**bl.TAGS, "listwise": LISTWISE_TAG}
    for b in baselines:
        now[b] = tag_costs(by_tag, [tags[b]]) if b in tags else counters()
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


async def _listwise_mode(scorer: LongReward, data: AgreementData, counted: list[HumanPair],
                         rows: dict[str, dict[str, Any]], options: ListwiseOptions,
                         ) -> tuple[list[Verdict], dict[str, Any]]:
    """Listwise selection once per prompt over all its answers; a pair's verdict is read
    from the prompt's chosen and rejected (``ListwiseSelection.verdict``), with each order's
    own verdict kept for the position-bias diagnostic."""
    import asyncio

    wanted = list(dict.fromkeys(p.prompt_id for p in counted))
    records = {r.prompt_id: r for r in data.records}

    async def one(pid: str) -> Any:
        rec = records[pid]
        language = (rows.get(rec.candidates[0].id) or {}).get("language")
        opts = (options.model_copy(update={"language": language})
                if options.language == "auto" and language in ("en", "zh") else options)
        return await select_listwise(scorer.settings, context=rec.context, query=rec.query,
                                     answers=[c.response for c in rec.candidates], options=opts)

    got = dict(zip(wanted, await asyncio.gather(*(one(pid) for pid in wanted)), strict=True))
    verdicts: list[Verdict] = []
    details: dict[str, Any] = {}
    for p in counted:
        sel = got[p.prompt_id]
        ids = [c.id for c in records[p.prompt_id].candidates]
        a, b = ids.index(p.a), ids.index(p.b)
        verdicts.append(sel.verdict(a, b))
        details[p.id] = {"verdict": verdicts[-1], "orders": sel.orders(a, b), "skip": sel.skip,
                         "reason": sel.reason}
    return verdicts, details


def select_prompts(data: AgreementData, options: AgreementOptions) -> tuple[AgreementData,
                                                                            Subset | None]:
    """The part of ``data`` that ``options.prompts`` / ``options.limit`` ask for (a prompt
    named in ``prompts`` that the data lacks is a ``UsageError``, listing a few that exist)."""
    if options.prompts is None and options.limit is None:
        return data, None
    records = data.records
    if options.prompts is not None:
        # A pairwise row without a prompt_id is grouped under its document's hash: its own
        # id names it (and so the prompt it belongs to) too.
        known = {r.prompt_id: r.prompt_id for r in records}
        if data.kind == "pairwise":
            known.update({p.id: p.prompt_id for p in data.pairs if p.id not in known})
        missing = [p for p in options.prompts if p not in known]
        if missing:
            some = ", ".join(sorted({p.id for p in data.pairs} if data.kind == "pairwise"
                                    else known)[:5])
            raise UsageError(f"--prompts names {len(missing)} prompt(s) the data does not hold "
                             f"({', '.join(missing[:5])}); ids there look like: {some}")
        wanted = {known[p] for p in options.prompts}
        records = [r for r in records if r.prompt_id in wanted]
    if options.limit is not None:
        records = records[:options.limit]
    keep = {r.prompt_id for r in records}
    subset = Subset(prompts_in_data=len(data.records), prompts=options.prompts,
                    limit=options.limit)
    return replace(data, records=records,
                   pairs=[p for p in data.pairs if p.prompt_id in keep]), subset


def _score_verdicts(rows: dict[str, dict[str, Any]], counted: list[HumanPair],
                    dims: list[str]) -> dict[str, list[Verdict]]:
    """The reward's and each dimension's verdict on every counted pair."""

    def value(aid: str, dim: str | None) -> float | None:
        row = rows.get(aid)
        if row is None:
            return None
        return row.get("reward") if dim is None else (row.get("scores") or {}).get(dim)

    return {name: [verdict_from_scores(value(p.a, dim), value(p.b, dim)) for p in counted]
            for name, dim in [("reward", None), *((d, d) for d in dims)]}


def _free_baselines(which: list[str], data: AgreementData, counted: list[HumanPair],
                    pool_path: str | None, fields: FieldMap,
                    ) -> tuple[dict[str, list[Verdict]], list[str]]:
    """The baselines that make no call: length and consensus (with a note when consensus
    cannot choose)."""
    verdicts: dict[str, list[Verdict]] = {}
    notes: list[str] = []
    if "length" in which:
        text = {c.id: c.response for r in data.records for c in r.candidates}
        verdicts["length"] = [bl.length_verdict(text[p.a], text[p.b]) for p in counted]
    if "consensus" in which:
        pool = _read_pool(pool_path, fields) if pool_path else {}
        if all(len(r.candidates) + len(pool.get(r.prompt_id) or []) < 3 for r in data.records):
            # Two answers are each other's only neighbour: every pair ties, and a row of 50%
            # would read as a finding.
            notes.append("consensus left out: every prompt has 2 answers, and each is then "
                         "the other's only neighbour (every pair ties); give more samples per "
                         "prompt with --consensus-pool FILE")
        else:
            score: dict[str, float] = {}
            for rec in data.records:
                values = bl.consensus_scores([c.response for c in rec.candidates],
                                             pool.get(rec.prompt_id))
                score.update(zip([c.id for c in rec.candidates], values, strict=True))
            verdicts["consensus"] = [verdict_from_scores(score[p.a], score[p.b])
                                     for p in counted]
    return verdicts, notes


async def _self_consistency(scorer: LongReward, options: ScoreOptions, data: AgreementData,
                            counted: list[HumanPair], agreement: AgreementOptions,
                            rows: dict[str, dict[str, Any]]) -> Diagnostic:
    """Rescore the answers of the first labelled pairs ``repeats`` times at T > 0, each
    rescoring with its own seed, so each is its own cached call (a rerun repeats none)."""
    chosen: list[str] = []
    for p in counted:
        for aid in (p.a, p.b):
            if aid not in chosen and len(chosen) < agreement.self_consistency:
                chosen.append(aid)
    keep = set(chosen)
    records = [replace(r, candidates=[c for c in r.candidates if c.id in keep])
               for r in data.records]
    records = [r for r in records if r.candidates]
    temperature = agreement.self_consistency_temperature
    hot = options.model_copy(update={"judge": options.judge.model_copy(
        update={"temperature": temperature})})
    before = scorer.client.stats.total
    requests, hits, tokens = before.requests, before.cache_hits, before.usage.prompt_tokens
    repeats: dict[str, list[float | None]] = {aid: [] for aid in chosen}
    for k in range(agreement.self_consistency_repeats):
        again = LongReward(scorer.client, options=hot, retriever=scorer.retriever,
                           tokenizer=scorer.tokenizer)
        # The seed is part of the cache key: each rescoring is a distinct call, and the same
        # one on a rerun (endpoints that ignore seeds still sample at T > 0).
        again.settings.generate = again.settings.generate.model_copy(update={"seed": k + 1})
        for rec in records:
            for ans in await again.score_prompt(rec):
                repeats[ans.id].append(ans.reward)
    after = scorer.client.stats.total
    pairs = [(p.a, p.b) for p in counted if p.a in keep and p.b in keep]
    gap = mean_abs_gap(((rows.get(p.a) or {}).get("reward"), (rows.get(p.b) or {}).get("reward"))
                       for p in counted)
    return self_consistency(repeats, pairs, temperature=temperature,
                            calls=(after.requests - requests) + (after.cache_hits - hits),
                            prompt_tokens=after.usage.prompt_tokens - tokens,
                            reference_gap=gap)


def _orders(details: dict[str, Any], counted: list[HumanPair],
            ) -> dict[str, list[tuple[Verdict, Verdict]]]:
    """Per method that asked in both orders, its two verdicts on each pair."""
    out: dict[str, list[tuple[Verdict, Verdict]]] = {}
    for method, per_pair in details.items():
        if not isinstance(per_pair, dict):
            continue
        got = [tuple(per_pair[p.id]["orders"]) for p in counted
               if isinstance(per_pair.get(p.id), dict) and per_pair[p.id].get("orders")]
        if got:
            out[method] = got  # type: ignore[assignment]
    return out


@dataclass
class _Judged:
    """What the judge (and the free baselines) said, before it is counted against people."""

    rows: dict[str, dict[str, Any]]
    summary: ScoreSummary
    #: the reward's and each dimension's verdicts; the leave-one-out rewards'; the baselines'
    scored: dict[str, list[Verdict]]
    ablation: dict[str, list[Verdict]]
    baseline: dict[str, list[Verdict]]
    baseline_details: dict[str, Any]
    notes: list[str]
    costs: dict[str, dict[str, int]]
    #: other scoring modes on the same pairs (integer verdicts, listwise selection): their
    #: verdicts, and the rows of those read from the same replies
    modes: dict[str, list[Verdict]]
    mode_rows: dict[str, dict[str, dict[str, Any]]]
    stats: dict[str, Any]
    consistency: Diagnostic
    ablation_seconds: float
    ablation_requests: int


async def _judge(data: AgreementData, counted: list[HumanPair], options: ScoreOptions,
                 agreement: AgreementOptions, scorer: LongReward, run_dir: Path,
                 scored_path: Path, fields: FieldMap,
                 on_start: Callable[[int, int], None] | None,
                 on_answer: Callable[[dict[str, Any]], None] | None) -> _Judged:
    """Score the answers (the resumable score stage), recombine the leave-one-out rewards,
    run the baselines and, when asked, the self-consistency rescorings."""
    # The answers file is ours, in the default field names; the stage scores it resumably.
    # A subset's answers are added to those of earlier runs (the score stage keeps rows it
    # is not asked about), so growing --limit resumes.
    run_dir.mkdir(parents=True, exist_ok=True)
    answers_path = run_dir / "answers.jsonl"
    write_rows(answers_path, _answers_rows(data.records))
    summary: ScoreSummary = await score_file(
        answers_path, scored_path, options, run_dir=run_dir, scorer=scorer, on_start=on_start,
        on_answer=on_answer)
    wanted = {c.id for r in data.records for c in r.candidates}
    rows = {str(r["id"]): r for r in read_rows(scored_path)[0] if str(r["id"]) in wanted}
    dims = list(options.dimensions)

    requests_before = scorer.client.stats.total.requests
    ablated, ablation_seconds = _ablation(rows, dims, options.weights,
                                          options.unscored_dimension)
    ablation_requests = scorer.client.stats.total.requests - requests_before
    ablation = {f"without {d}": [verdict_from_scores(ablated[d].get(p.a), ablated[d].get(p.b))
                                 for p in counted] for d in dims} if len(dims) > 1 else {}

    as_integers = integer_rows(rows, dims, options.weights, options.unscored_dimension)
    mode_rows = {} if as_integers is None else {INTEGER_MODE: as_integers}
    modes = {name: [verdict_from_scores((m.get(p.a) or {}).get("reward"),
                                        (m.get(p.b) or {}).get("reward")) for p in counted]
             for name, m in mode_rows.items()}
    baseline, notes = _free_baselines(agreement.baselines, data, counted,
                                      agreement.consensus_pool, fields)
    if mode_rows:
        used = Counter(str(v.get("used")) for row in rows.values() for d in dims
                       if (v := ((row.get("details") or {}).get(d) or {}).get("verdict")))
        reasons = Counter(str(v["reason"]) for row in rows.values() for d in dims
                          if (v := ((row.get("details") or {}).get(d) or {}).get("verdict"))
                          and v.get("reason"))
        kept = f"; most common reason for an integer: {reasons.most_common(1)[0][0]}" \
            if reasons else ""
        notes.append(f"verdicts: expected: {used['expected']} of {sum(used.values())} "
                     f"dimension verdicts weighed by the judge's token probabilities{kept}; "
                     f"'{INTEGER_MODE}' reads the same replies' written verdicts (no extra "
                     "judge call)")
    details: dict[str, Any] = {}
    judged = [b for b in agreement.baselines if b in bl.JUDGED]
    with cached_calls(scorer.client, run_dir) as store:
        if judged and counted:
            got, details = await _judged_baselines(judged, scorer, data, rows, counted)
            baseline.update(got)
        if agreement.listwise is not None and counted:
            modes["listwise"], details["listwise"] = await _listwise_mode(
                scorer, data, counted, rows, agreement.listwise)
        stats = scorer.client.snapshot()
        costs = method_costs(store, _cost_key(data), stats.get("by_tag", {}), dims,
                             [*baseline, *modes])
        # after the costs: the rescorings are not the reward's cost
        consistency = (await _self_consistency(scorer, options, data, counted, agreement, rows)
                       if agreement.self_consistency and counted else
                       diag.self_consistency_not_run())
    return _Judged(rows=rows, summary=summary, scored=_score_verdicts(rows, counted, dims),
                   ablation=ablation, baseline=baseline, baseline_details=details, notes=notes,
                   modes=modes, mode_rows=mode_rows,
                   costs=costs, stats=stats, consistency=consistency,
                   ablation_seconds=ablation_seconds, ablation_requests=ablation_requests)


def _count(j: _Judged, counted: list[HumanPair], dims: list[str], agreement: AgreementOptions,
           ) -> tuple[list[MethodAccuracy], list[MethodAccuracy], list[PairVerdicts],
                      list[Diagnostic], Bootstrap]:
    """Each method's accuracy with its interval and cost, the per-pair verdicts, and the
    diagnostics."""
    labels = [p.label for p in counted]
    boot = Bootstrap([p.prompt_id for p in counted], resamples=agreement.bootstrap,
                     seed=agreement.seed)

    def acc(name: str, verdicts: list[Verdict], group: str) -> MethodAccuracy:
        a = accuracy(name, verdicts, labels, agreement.ties, boot)
        cost = j.costs.get(name)
        return MethodAccuracy(name=name, group=group, accuracy=a.accuracy, ci=(a.low, a.high),
                              n=a.n, agree=a.agree, disagree=a.disagree, ties=a.ties,
                              abstained=a.abstained,
                              cost=MethodCost(**cost) if cost is not None else None)

    methods = [acc("reward", j.scored["reward"], "reward"),
               *(acc(m, v, "mode") for m, v in j.modes.items()),
               *(acc(d, j.scored[d], "dimension") for d in dims),
               *(acc(b, v, "baseline") for b, v in j.baseline.items())]
    reward_acc = methods[0].accuracy
    ablation = []
    for name, verdicts in j.ablation.items():
        a = acc(name, verdicts, "ablation")
        a.removed = name.split(" ", 1)[1]
        a.delta = None if a.accuracy is None or reward_acc is None else a.accuracy - reward_acc
        ablation.append(a)

    def reward_of(aid: str) -> float | None:
        return (j.rows.get(aid) or {}).get("reward")

    every = {**j.scored, **j.modes, **j.ablation, **j.baseline}
    pairs = [PairVerdicts(id=p.id, prompt_id=p.prompt_id, a=p.a, b=p.b,
                          label=p.label,  # type: ignore[arg-type]
                          gap=p.gap, reward_a=reward_of(p.a), reward_b=reward_of(p.b),
                          verdicts={m: v[i] for m, v in every.items()})
             for i, p in enumerate(counted)]
    length, ties, correlations, injection = diag.diagnose_rows(list(j.rows.values()), dims)
    diagnostics = [diag.position_bias(_orders(j.baseline_details, counted)), length, ties,
                   *(diag.tie_rate(list(m.values()), mode=name)
                     for name, m in j.mode_rows.items()),
                   j.consistency, correlations, injection]
    return methods, ablation, pairs, diagnostics, boot


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
) -> AgreementResult:
    """Score the answers of ``data_path`` and measure agreement with its human labels; write
    the result to ``output_path`` (JSON) and return it. ``options.fields`` names the data's
    fields. A coroutine: ``asyncio.run(evaluate_agreement(...))``."""
    agreement = agreement or AgreementOptions()
    started = time.perf_counter()
    output_path = Path(output_path)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(output_path)
    data, subset = select_prompts(read_agreement_data(data_path, agreement, options.fields),
                                  agreement)
    write_rejected(output_path, data.rejected)
    score_options = options.model_copy(update={"fields": FieldMap()})
    own = scorer is None
    if scorer is None:
        scorer = LongReward(build_client(score_options), options=score_options)
    scored_path = scored_path_for(output_path)
    dims = list(score_options.dimensions)
    counted = [p for p in data.pairs if p.label != "tie"]
    try:
        judged = await _judge(data, counted, score_options, agreement, scorer, run_dir,
                              scored_path, options.fields, on_start, on_answer)
    finally:
        if own:
            await scorer.aclose()
    methods, ablation, pairs, diagnostics, boot = _count(judged, counted, dims, agreement)
    summary, stats = judged.summary, judged.stats
    result = AgreementResult(
        data=str(data_path), scored=str(scored_path), run_dir=str(run_dir), format=data.kind,
        subset=subset, prompts=len(data.records),
        answers=sum(len(r.candidates) for r in data.records), pairs=len(counted),
        human_ties_left_out=sum(1 for p in data.pairs if p.label == "tie"),
        below_min_gap=data.below_gap, rejected=len(data.rejected),
        tie_rule=agreement.ties, tie_rule_text=TIE_RULES[agreement.ties],
        bootstrap=BootstrapInfo(resamples=agreement.bootstrap, seed=agreement.seed,
                                level=boot.level),
        dimensions=dims, weights=score_options.weights, judge=scorer.judge_identity,
        methods=methods, ablation=ablation, ablation_seconds=judged.ablation_seconds,
        ablation_requests=judged.ablation_requests, baseline_details=judged.baseline_details,
        diagnostics=diagnostics, notes=judged.notes, pair_details=pairs,
        scoring=ScoringSummary(answers=summary.answers_total,
                               scored_now=summary.answers_scored,
                               resumed=summary.answers_done_before,
                               all_unscored=summary.all_unscored,
                               internal_errors=summary.internal_errors),
        stats={k: v for k, v in stats.items() if k not in ("notices", "slowest_calls")},
        slowest_calls=stats["slowest_calls"], seconds=time.perf_counter() - started,
        exit_code=1 if (data.rejected or summary.exit_code) else 0,
        options={"agreement": agreement.model_dump(mode="json"),
                 "score": _public_options(score_options)})
    result.write(output_path)
    return result


def _public_options(options: ScoreOptions) -> dict[str, Any]:
    from ..stages.score import score_output_settings

    return score_output_settings(options)
