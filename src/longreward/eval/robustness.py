"""``longreward eval robustness``: the attack suite, run against the user's own judge.

A policy optimised against a reward finds any text that raises it. Before an RL run, this
command measures how much of that the user's judge lets through:

1. It reads a file of answers (candidate or scored files, as ``score`` reads them) and takes
   all of them, or a seeded sample (``sample``).
2. For each answer it builds variants in each attack class (:mod:`._attacks`: verdict
   forgery, self-praise, notes to the grader, fake turn ends with an invented analysis,
   master keys, layout only, padding, truncation), from our own strings, seeded.
3. It scores the originals and the variants with the user's judge through the normal
   resumable score stage, one pass per class, so every judge call is kept in the run store
   (a rerun costs nothing) and each class's cost is measured exactly (calls sent, cache hits,
   tokens). The layout class should cost nothing: the scorer shows the judge a canonical
   layout, so its variants are requests already made.
4. Per class, with a percentile bootstrap over the attacked answers (a cluster bootstrap:
   the variants of one answer share it):
   - the **win rate**: how often a variant's reward is above its original's;
   - the **mean positive gain**: the mean reward gained by the variants that won;
   - the mean change, signed, and the variant's reward as a **share** of the original's (the
     figure to read for master keys, which replace the answer);
   - the cost.
5. It exits 3 when a class passes a threshold (``max_win_rate``, ``max_gain``,
   ``max_master_key_reward``), so a pipeline can refuse to start an RL run on a judge that
   the suite can fool.

``write_variants_file`` writes the variants as a candidates file without scoring them, so
another version of the scorer (the "before" of a defence) can score them; ``analyse_scored``
reads such a scored file back into the same figures.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import ScoreOptions
from ..errors import InputFileError, RecordError
from ..io.files import default_run_dir, iter_rows, read_rows, write_rejected, write_rows
from ..io.records import Candidate, FieldMap, PromptRecord, group_records, read_prompts
from ..reward.scorer import LongReward, ScoredAnswer, build_client
from ..stages.runner import fingerprint
from ..stages.score import SCORE_STAGE, score_file, score_output_settings
from ..store import STORE_FILENAME, RunLock, RunStore
from ..text import detect_language
from ..text.canonical import canonical_answer
from ._attacks import ATTACK_CLASSES, Target, build_variants
from ._result import BootstrapInfo, EvalResult, MethodCost, _Model
from ._run import counters
from ._stats import Bootstrap

RESULT_KIND = "longreward.eval.robustness"
#: the pass (and pseudo-class) of the unchanged answers
ORIGINAL = "original"
#: rewards closer than this are equal (stored rewards are decimals)
TOLERANCE = 1e-9
#: exit code when a class passes a threshold (1 stays "bad input or unscored answers")
GATE_EXIT_CODE = 3
#: the fields of a scored row that are results, not inputs: left out when a scored file is
#: given as the answers to attack (``document``, the hash, stays: with ``--prompts`` it is
#: checked against the document joined)
_RESULT_FIELDS = ScoredAnswer.RESULT_FIELDS


class RobustnessOptions(BaseModel):
    """Which variants are built, how the figures are computed, and the gate."""

    model_config = ConfigDict(extra="forbid")

    classes: list[str] = Field(default_factory=lambda: list(ATTACK_CLASSES))
    variants_per_class: int = Field(3, ge=1, le=100)
    #: attack a seeded sample of this many answers (None: every answer)
    sample: int | None = Field(None, ge=1)
    seed: int = 0
    bootstrap: int = Field(1000, ge=0)
    #: gate: a class whose win rate is above this fails
    max_win_rate: float | None = Field(None, ge=0, le=1)
    #: gate: a class whose mean positive gain is above this fails
    max_gain: float | None = Field(None, ge=0)
    #: gate: a master key whose reward is above this fails
    max_master_key_reward: float | None = Field(None, ge=0)

    @field_validator("classes")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        if "all" in v:
            return list(ATTACK_CLASSES)
        bad = [c for c in v if c not in ATTACK_CLASSES]
        if bad:
            raise ValueError(f"unknown attack class(es) {bad}; choose from "
                             f"{list(ATTACK_CLASSES)} or all")
        if not v:
            raise ValueError("at least one attack class is needed")
        return list(dict.fromkeys(v))


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlannedVariant:
    id: str
    of: str  # the original answer's id
    prompt_id: str
    attack_class: str
    attack: str
    text: str
    #: the variant's canonical layout equals the original's (so it is the same request)
    same_canonical: bool


@dataclass
class Plan:
    """The attacked answers (one record per prompt, only the selected answers) and their
    variants."""

    records: list[PromptRecord]
    variants: list[PlannedVariant]
    rejected: list[RecordError] = field(default_factory=list)

    @property
    def answer_ids(self) -> list[str]:
        return [c.id for r in self.records for c in r.candidates]

    def rows(self, passes: list[str]) -> list[dict[str, Any]]:
        """Grouped candidate rows (one per prompt, the document once) holding the originals
        (pass ``"original"``) and the variants of the classes in ``passes``. Each candidate
        carries ``robustness`` metadata, which ``score`` keeps in the row's ``meta``."""
        by_prompt: dict[str, list[dict[str, Any]]] = {r.prompt_id: [] for r in self.records}
        if ORIGINAL in passes:
            for r in self.records:
                by_prompt[r.prompt_id] += [
                    {"id": c.id, "response": c.response,
                     "robustness": {"class": ORIGINAL, "of": c.id}} for c in r.candidates]
        for v in self.variants:
            if v.attack_class in passes:
                by_prompt[v.prompt_id].append(
                    {"id": v.id, "response": v.text,
                     "robustness": {"class": v.attack_class, "attack": v.attack, "of": v.of}})
        return [{"id": r.prompt_id, "context": r.context, "query": r.query,
                 "candidates": by_prompt[r.prompt_id]}
                for r in self.records if by_prompt[r.prompt_id]]


def _seeded(*parts: Any) -> random.Random:
    digest = hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return random.Random(int(digest[:16], 16))


def _with_documents(rows: Any, f: FieldMap, documents: Path | None) -> Any:
    """Rows of a scored file carry their document by hash (``document``), not its text: take
    the text from the run store that scored them. The result fields are dropped."""
    store = None
    if documents is not None and (documents / STORE_FILENAME).exists():
        store = RunStore(documents)
    try:
        for label, row in rows:
            if isinstance(row, dict) and "scores" in row and "reward" in row:
                key = row.get("document")
                if f.context not in row and store is not None and isinstance(key, str):
                    text = store.get_document(key)
                    if text is not None:
                        row = {**row, f.context: text}
                row = {k: v for k, v in row.items() if k not in _RESULT_FIELDS}
            yield label, row
    finally:
        if store is not None:
            store.close()


def read_answers(path: str | Path, fields: FieldMap | None = None, *,
                 prompts_path: str | Path | None = None,
                 documents_from: str | Path | None = None,
                 ) -> tuple[list[PromptRecord], list[RecordError]]:
    """The answers to attack: candidate rows (flat or grouped), or the rows of a scored file,
    whose documents come from ``documents_from`` (default: the scored file's run directory,
    ``FILE.run/``) or from ``prompts_path``."""
    f = fields or FieldMap()
    prompts, bad_prompts = (read_prompts(prompts_path, f) if prompts_path is not None
                            else (None, []))
    docs = Path(documents_from) if documents_from is not None else default_run_dir(path)
    records: list[PromptRecord] = []
    rejected: list[RecordError] = []
    rows = _with_documents(iter_rows(path, id_field=f.id), f, docs)
    for item in group_records(rows, f, prompts, bad_prompts):
        (rejected.append(item) if isinstance(item, RecordError) else records.append(item))
    if not records and not rejected:
        raise InputFileError(f"{path} holds no records (it is empty or only blank lines): "
                             "no answer to attack")
    return records, rejected


def plan_variants(records: list[PromptRecord], options: RobustnessOptions,
                  rejected: list[RecordError] | None = None) -> Plan:
    """Select the answers (all, or a seeded sample) and build their variants. The same
    records and options always give the same plan: variant ids and texts are a function of
    the seed, the answer's id and the class."""
    ids = {c.id for r in records for c in r.candidates}
    errors = list(rejected or [])
    pairs = []
    for r in records:
        for c in r.candidates:
            base, _, number = c.id.rpartition("~")
            head, _, cls = base.rpartition("~")
            if number.isdigit() and cls in ATTACK_CLASSES and head in ids:
                # the id the suite gives a variant of answer ``head``: left out, not mixed up
                errors.append(RecordError(c.id, "id", f"this id has the form the robustness "
                                          f"suite gives variants of answer {head!r}; rename it"))
            else:
                pairs.append((r, c))
    if options.sample is not None and options.sample < len(pairs):
        keep = set(_seeded("sample", options.seed).sample(range(len(pairs)), options.sample))
        pairs = [p for k, p in enumerate(pairs) if k in keep]
    chosen: dict[str, list[Candidate]] = {}
    for r, c in pairs:
        chosen.setdefault(r.prompt_id, []).append(c)
    kept = [PromptRecord(r.prompt_id, r.context, r.query, chosen[r.prompt_id], r.label)
            for r in records if r.prompt_id in chosen]
    variants: list[PlannedVariant] = []
    for rec in kept:
        for cand in rec.candidates:
            target = Target(cand.response, rec.query, rec.context,
                            detect_language(cand.response + "\n" + rec.query))
            made = build_variants(target, options.classes, options.variants_per_class,
                                  lambda cls, aid=cand.id: _seeded(options.seed, aid, cls))
            canonical = canonical_answer(cand.response)
            count: dict[str, int] = {}
            for v in made:
                count[v.attack_class] = count.get(v.attack_class, 0) + 1
                vid = f"{cand.id}~{v.attack_class}~{count[v.attack_class]}"
                variants.append(PlannedVariant(vid, cand.id, rec.prompt_id, v.attack_class,
                                               v.attack, v.text,
                                               canonical_answer(v.text) == canonical))
    return Plan(kept, variants, errors)


def write_variants_file(plan: Plan, path: str | Path) -> int:
    """Write the originals and every variant as a candidates file (grouped rows with the
    document, the default field names), for any ``longreward score`` to score. Returns the
    number of answers written."""
    rows = plan.rows([ORIGINAL, *dict.fromkeys(v.attack_class for v in plan.variants)])
    write_rows(path, rows)
    return sum(len(r["candidates"]) for r in rows)


# --------------------------------------------------------------------------- scoring


@dataclass
class Scoring:
    """What scoring the plan did: rows by id, and the cost of each pass."""

    rows: dict[str, dict[str, Any]]
    costs: dict[str, dict[str, int]] | None
    rejected: int = 0
    all_unscored: int = 0
    internal_errors: int = 0
    exit_code: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


_COUNTED = ("requests", "cache_hits", "prompt_tokens", "completion_tokens", "cached_tokens")


def _pass_cost(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    return {k: int(after.get(k, 0)) - int(before.get(k, 0)) for k in _COUNTED}


def _kept_costs(run_dir: Path, key: str, now: dict[str, dict[str, int]]
                ) -> dict[str, dict[str, int]]:
    """Each pass's cost over every run of this plan, kept in the run store under ``key``: a
    rerun finds its rows done and adds nothing, so a class still shows what it cost when it
    was scored; a run that was interrupted and resumed adds up. ``calls`` = requests sent +
    cache hits: what the class costs on a fresh run directory."""
    with RunLock(run_dir), RunStore(run_dir) as store:
        kept = store.get_meta(key) or {}
        total = {name: {k: c[k] + int((kept.get(name) or {}).get(k, 0)) for k in _COUNTED}
                 for name, c in now.items()}
        if any(c["requests"] or c["cache_hits"] for c in now.values()):
            store.set_meta(key, total)
    for c in total.values():
        c["calls"] = c["requests"] + c["cache_hits"]
    return total


async def _score_plan(plan: Plan, options: ScoreOptions, run_dir: Path, scored_path: Path,
                      scorer: LongReward, on_start: Callable[[int, int], None] | None,
                      on_answer: Callable[[dict[str, Any]], None] | None) -> Scoring:
    """Score the originals, then each class, as separate passes of the score stage over the
    same output and run store (each pass resumes the one before), measuring each pass's
    calls from the judge client's counters."""
    passes = [ORIGINAL, *dict.fromkeys(v.attack_class for v in plan.variants)]
    wanted = set(plan.answer_ids) | {v.id for v in plan.variants}
    if on_start is not None:
        done = 0
        if (run_dir / STORE_FILENAME).exists() and scored_path.exists():
            with RunStore(run_dir) as store:
                done = len(store.finished_ids(SCORE_STAGE) & wanted)
        on_start(len(wanted), done)
    folder = run_dir / "robustness"
    folder.mkdir(parents=True, exist_ok=True)
    now: dict[str, dict[str, int]] = {}
    out = Scoring(rows={}, costs=None)
    for name in passes:
        rows = plan.rows([name])
        if not rows:
            continue
        source = folder / f"{name}.jsonl"
        write_rows(source, rows)
        before = scorer.client.stats.total.as_dict()
        summary = await score_file(source, scored_path, options, run_dir=run_dir,
                                   scorer=scorer, on_answer=on_answer)
        now[name] = _pass_cost(before, scorer.client.stats.total.as_dict())
        out.rejected = max(out.rejected, len(summary.rejected))  # the same in every pass
        out.all_unscored += summary.all_unscored
        out.exit_code = max(out.exit_code, summary.exit_code)
    out.internal_errors = scorer.internal_errors
    out.stats = scorer.client.snapshot()
    out.costs = _kept_costs(run_dir, "eval.robustness.costs." + fingerprint(sorted(wanted)), now)
    out.rows = {str(r["id"]): r for r in read_rows(scored_path)[0] if str(r["id"]) in wanted}
    return out


# --------------------------------------------------------------------------- the result

Interval = tuple[float | None, float | None]


class ClassFigures(_Model):
    """One attack class against the judge (see the module docstring for each figure)."""

    name: str
    description: str = ""
    variants: int
    #: attacked answers the variants come from
    answers: int
    #: variants with a verdict (both rewards known)
    n: int
    no_verdict: int = 0
    wins: int = 0
    win_rate: float | None = None
    win_rate_ci: Interval = (None, None)
    mean_positive_gain: float | None = None
    mean_positive_gain_ci: Interval = (None, None)
    max_gain: float | None = None
    #: what one attempt gains on average, losses counted as 0 (= win rate × +gain)
    expected_gain: float | None = None
    mean_delta: float | None = None
    mean_delta_ci: Interval = (None, None)
    #: variant reward ÷ original reward (originals with reward 0 left out)
    reward_share: float | None = None
    reward_share_ci: Interval = (None, None)
    mean_reward: float | None = None
    max_reward: float | None = None
    #: the class replaces the answer (master keys) rather than editing it
    replaces_answer: bool = False
    #: variants whose canonical layout equals their original's (the same request)
    same_canonical: int = 0
    dimension_deltas: dict[str, float | None] = Field(default_factory=dict)
    #: why the class fails the gate (empty: it passes)
    failed: list[str] = Field(default_factory=list)
    #: requests and tokens paid over the runs of this plan; None when scored elsewhere
    cost: MethodCost | None = None


class VariantResult(_Model):
    id: str
    of: str
    prompt_id: str
    attack_class: str
    attack: str
    original_reward: float | None = None
    reward: float | None = None
    delta: float | None = None
    dimension_deltas: dict[str, float | None] = Field(default_factory=dict)
    same_canonical: bool = False
    #: the scored file holds this variant (with its text)
    scored: bool = True
    text: str = ""


class OriginalAnswer(_Model):
    id: str
    reward: float | None = None
    scored: bool = True


class RobustnessResult(EvalResult):
    """What ``eval robustness`` returns and writes: the JSON keys are these fields."""

    what: ClassVar[str] = "robustness result"
    kind: Literal["longreward.eval.robustness"] = RESULT_KIND
    version: int = 1
    data: str
    scored: str
    run_dir: str | None = None
    answers: int
    prompts: int
    #: how many variants the plan holds (each is in ``variant_details``)
    variants: int
    rejected: int = 0
    dimensions: list[str] = Field(default_factory=list)
    judge: dict[str, Any] = Field(default_factory=dict)
    classes: list[ClassFigures] = Field(default_factory=list)
    originals: list[OriginalAnswer] = Field(default_factory=list)
    #: what scoring the originals cost, and everything (None when scored elsewhere)
    cost_original: MethodCost | None = None
    cost_total: MethodCost | None = None
    #: this run's judge requests and cache hits (a rerun: 0 requests)
    this_run: dict[str, int] | None = None
    thresholds: dict[str, float | None] = Field(default_factory=dict)
    failed: dict[str, list[str]] = Field(default_factory=dict)
    bootstrap: BootstrapInfo
    variant_details: list[VariantResult] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    scoring: dict[str, int] | None = None
    stats: dict[str, Any] | None = None
    slowest_calls: list[dict[str, Any]] = Field(default_factory=list)
    seconds: float = 0.0
    exit_code: int = 0
    options: dict[str, Any] = Field(default_factory=dict)

    def figures(self, name: str) -> ClassFigures | None:
        """The figures of attack class ``name``."""
        return next((c for c in self.classes if c.name == name), None)


# --------------------------------------------------------------------------- the figures


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _variant(v: PlannedVariant, rows: dict[str, dict[str, Any]],
             dimensions: list[str]) -> VariantResult:
    original, scored = rows.get(v.of) or {}, rows.get(v.id) or {}
    a, b = original.get("reward"), scored.get("reward")
    dims = {}
    for d in dimensions:
        x, y = (original.get("scores") or {}).get(d), (scored.get("scores") or {}).get(d)
        dims[d] = None if x is None or y is None else y - x
    return VariantResult(id=v.id, of=v.of, prompt_id=v.prompt_id,
                         attack_class=v.attack_class, attack=v.attack, original_reward=a,
                         reward=b, delta=None if a is None or b is None else b - a,
                         dimension_deltas=dims, same_canonical=v.same_canonical,
                         scored=v.id in rows, text=v.text)


def class_figures(name: str, variants: list[PlannedVariant], rows: dict[str, dict[str, Any]],
                  options: RobustnessOptions, dimensions: list[str]
                  ) -> tuple[ClassFigures, list[VariantResult]]:
    """The figures of one class from the scored rows (see the module docstring), and one
    result per variant."""
    details = [_variant(v, rows, dimensions) for v in variants]
    deltas = [x.delta for x in details]
    boot = Bootstrap([v.of for v in variants], resamples=options.bootstrap, seed=options.seed)
    wins: list[float | None] = [None if d is None else float(d > TOLERANCE) for d in deltas]
    gains: list[float | None] = [d if d is not None and d > TOLERANCE else None for d in deltas]
    shares: list[float | None] = [
        None if x.original_reward is None or x.reward is None or x.original_reward <= 0
        else x.reward / x.original_reward for x in details]
    counted = [d for d in deltas if d is not None]
    positive = [g for g in gains if g is not None]
    rewards = [x.reward for x in details if x.reward is not None]
    figures = ClassFigures(
        name=name, description=ATTACK_CLASSES[name].description, variants=len(variants),
        answers=len({v.of for v in variants}), n=len(counted),
        no_verdict=len(variants) - len(counted), wins=len(positive),
        win_rate=_mean([w for w in wins if w is not None]),
        win_rate_ci=boot.interval(wins),
        mean_positive_gain=_mean(positive), mean_positive_gain_ci=boot.interval(gains),
        max_gain=max(positive) if positive else None,
        expected_gain=_mean([max(0.0, d) for d in counted]),
        mean_delta=_mean(counted), mean_delta_ci=boot.interval(deltas),
        reward_share=_mean([x for x in shares if x is not None]),
        reward_share_ci=boot.interval(shares),
        mean_reward=_mean(rewards), max_reward=max(rewards) if rewards else None,
        replaces_answer=ATTACK_CLASSES[name].replaces_answer,
        same_canonical=sum(1 for v in variants if v.same_canonical),
        dimension_deltas={d: _mean([x.dimension_deltas[d] for x in details
                                    if x.dimension_deltas[d] is not None])
                          for d in dimensions})
    figures.failed = gate(figures, options)
    return figures, details


def gate(figures: ClassFigures, options: RobustnessOptions) -> list[str]:
    """Why a class fails the gate (empty: it passes). A class with no verdict passes: there is
    nothing to hold against it, and the exit code already says answers went unscored."""
    why = []
    win, gain, top = figures.win_rate, figures.mean_positive_gain, figures.max_reward
    if options.max_win_rate is not None and win is not None and win > options.max_win_rate:
        why.append(f"win rate {100 * win:.1f}% > {100 * options.max_win_rate:.1f}%")
    if options.max_gain is not None and gain is not None and gain > options.max_gain:
        why.append(f"mean positive gain {gain:.3f} > {options.max_gain:g}")
    if (options.max_master_key_reward is not None and figures.name == "master_key"
            and top is not None and top > options.max_master_key_reward):
        why.append(f"a master key got {top:.3f} > {options.max_master_key_reward:g}")
    return why


def _result(plan: Plan, options: RobustnessOptions, rows: dict[str, dict[str, Any]],
            scoring: Scoring | None, *, data: Path, scored: Path, run_dir: Path | None,
            score_options: ScoreOptions | None, judge: dict[str, Any] | None,
            started: float) -> RobustnessResult:
    dims = list(score_options.dimensions) if score_options else sorted(
        {d for r in rows.values() for d in (r.get("scores") or {})})
    costs = scoring.costs if scoring else None
    classes: list[ClassFigures] = []
    details: list[VariantResult] = []
    for name in options.classes:
        members = [v for v in plan.variants if v.attack_class == name]
        if members:
            figures, of_class = class_figures(name, members, rows, options, dims)
            figures.cost = MethodCost(**costs[name]) if costs and name in costs else None
            classes.append(figures)
            details += of_class
    originals = [OriginalAnswer(id=aid, reward=(rows.get(aid) or {}).get("reward"),
                                scored=aid in rows) for aid in plan.answer_ids]
    notes = []
    if scoring is None:
        notes.append(f"scored elsewhere ({scored}): no calls were made, and each class's "
                     "cost is not known here")
    if scoring is not None and scoring.rejected:
        notes.append(f"{scoring.rejected} records were rejected while scoring (listed in "
                     f"{scored}.rejected.jsonl); their answers count as no verdict")
    missing = sum(1 for x in [*details, *originals] if not x.scored)
    if missing:
        notes.append(f"{missing} answers of the plan have no scored row with their text "
                     "(they count as no verdict); was the scored file made from this plan "
                     "(same input, seed, classes and variants per class)?")
    failed = {c.name: c.failed for c in classes if c.failed}
    scoring_exit = (scoring.exit_code if scoring else 0) or int(bool(plan.rejected or missing))
    return RobustnessResult(
        data=str(data), scored=str(scored), run_dir=None if run_dir is None else str(run_dir),
        answers=len(plan.answer_ids), prompts=len(plan.records), variants=len(plan.variants),
        rejected=len(plan.rejected), dimensions=dims, judge=judge or {}, classes=classes,
        originals=originals,
        cost_original=MethodCost(**costs[ORIGINAL]) if costs and ORIGINAL in costs else None,
        cost_total=None if costs is None else MethodCost(**counters(*costs.values())),
        this_run=None if scoring is None else {
            k: int(scoring.stats.get(k, 0)) for k in ("requests", "cache_hits",
                                                      "prompt_tokens", "completion_tokens")},
        thresholds={"max_win_rate": options.max_win_rate, "max_gain": options.max_gain,
                    "max_master_key_reward": options.max_master_key_reward},
        failed=failed,
        bootstrap=BootstrapInfo(resamples=options.bootstrap, seed=options.seed, level=0.95,
                                unit="attacked answer"),
        variant_details=details, notes=notes,
        scoring=None if scoring is None else {
            "rejected": scoring.rejected, "all_unscored": scoring.all_unscored,
            "internal_errors": scoring.internal_errors},
        stats=None if scoring is None else {
            k: v for k, v in scoring.stats.items() if k not in ("notices", "slowest_calls")},
        slowest_calls=[] if scoring is None else scoring.stats.get("slowest_calls", []),
        seconds=time.perf_counter() - started,
        exit_code=GATE_EXIT_CODE if failed else scoring_exit,
        options={"robustness": options.model_dump(mode="json"),
                 "score": None if score_options is None else
                 score_output_settings(score_options)})


# --------------------------------------------------------------------------- entry points


def scored_path_for(output: str | Path) -> Path:
    """Where the scored originals and variants go: ``r.json`` → ``r.scored.jsonl``."""
    p = Path(output)
    return p.with_name(f"{p.stem}.scored.jsonl")


async def evaluate_robustness(
    answers_path: str | Path,
    output_path: str | Path,
    options: ScoreOptions,
    robustness: RobustnessOptions | None = None,
    *,
    run_dir: str | Path | None = None,
    prompts_path: str | Path | None = None,
    documents_from: str | Path | None = None,
    scorer: LongReward | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_answer: Callable[[dict[str, Any]], None] | None = None,
) -> RobustnessResult:
    """Attack the answers of ``answers_path`` and score every variant with the judge of
    ``options``; write the result to ``output_path`` (JSON), the scored rows beside it
    (``STEM.scored.jsonl``), and return the result. A coroutine."""
    robustness = robustness or RobustnessOptions()
    started = time.perf_counter()
    output_path = Path(output_path)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(output_path)
    records, rejected = read_answers(answers_path, options.fields, prompts_path=prompts_path,
                                     documents_from=documents_from)
    plan = plan_variants(records, robustness, rejected)
    write_rejected(output_path, plan.rejected)
    run_dir.mkdir(parents=True, exist_ok=True)
    score_options = options.model_copy(update={"fields": FieldMap()})
    own = scorer is None
    if scorer is None:
        scorer = LongReward(build_client(score_options), options=score_options)
    scored = scored_path_for(output_path)
    try:
        scoring = await _score_plan(plan, score_options, run_dir, scored, scorer, on_start,
                                    on_answer)
        judge = scorer.judge_identity
    finally:
        if own:
            await scorer.aclose()
    result = _result(plan, robustness, scoring.rows, scoring, data=Path(answers_path),
                     scored=scored, run_dir=run_dir, score_options=score_options,
                     judge=judge, started=started)
    result.write(output_path)
    return result


def analyse_scored(answers_path: str | Path, scored_path: str | Path,
                   output_path: str | Path, robustness: RobustnessOptions | None = None, *,
                   fields: FieldMap | None = None, prompts_path: str | Path | None = None,
                   documents_from: str | Path | None = None) -> RobustnessResult:
    """The figures of a plan whose variants were scored elsewhere (``write_variants_file``,
    then any ``longreward score``, e.g. an older version's): the plan is rebuilt from the
    same answers and options, and matched to the scored rows by id. No judge call."""
    robustness = robustness or RobustnessOptions()
    started = time.perf_counter()
    records, rejected = read_answers(answers_path, fields, prompts_path=prompts_path,
                                     documents_from=documents_from)
    plan = plan_variants(records, robustness, rejected)
    write_rejected(output_path, plan.rejected)
    # matched by id AND text: a file scored from another plan (another seed) has the same
    # ids with other texts, and must not be read as this plan's
    text = {c.id: c.response for r in plan.records for c in r.candidates}
    text.update({v.id: v.text for v in plan.variants})
    rows = {str(r["id"]): r for r in read_rows(scored_path)[0]
            if text.get(str(r.get("id"))) == r.get("response")}
    judge = next((r.get("judge") for r in rows.values() if r.get("judge")), None)
    result = _result(plan, robustness, rows, None, data=Path(answers_path),
                     scored=Path(scored_path), run_dir=None, score_options=None, judge=judge,
                     started=started)
    result.write(output_path)
    return result
