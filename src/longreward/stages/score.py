"""``longreward score``: the resumable file stage around the scorer.

Rows name their document by hash (``document``); the stage keeps each document once in the
run store, so ``pairs`` finds the text without the candidates file repeating it per answer
and without the user passing ``--prompts`` again.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import DIMENSION_NAMES, ScoreOptions
from ..errors import InputFileError, RecordError
from ..io.files import check_output, iter_rows, rejected_path
from ..io.records import FieldMap, PromptRecord, group_records, read_prompts
from ..reward.injection import copy_reasks, flag_counts
from ..reward.scorer import LongReward, ScoredAnswer, build_client
from ..store import TRANSPORT_KEYS, RunStore
from .runner import Redo, StageOutcome, StageSpec, Unit, fingerprint, run_stage, stage_run_dir

if TYPE_CHECKING:
    from ..judge.batch import BatchRun

SCORE_STAGE = "score"


@dataclass
class ScoreSummary(StageOutcome):
    """What a score run did: the stage runner's counters (its items are answers) and the
    scores of the whole output, resumed rows included."""

    #: answers scored and written by this run
    answers_scored: int = 0
    #: answers of the output unscored on every dimension (the judge failed them)
    all_unscored: int = 0
    unscored_by_dimension: dict[str, int] = field(default_factory=dict)
    #: why dimensions ended unscored, reason → count (digits masked, so one cause is one key)
    unscored_reasons: Counter[str] = field(default_factory=Counter)
    score_sums: dict[str, float] = field(default_factory=dict)
    score_counts: dict[str, int] = field(default_factory=dict)
    reward_sum: float = 0.0
    reward_count: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0
    #: dimensions left unscored by a bug (traceback in the log), not by the judge
    internal_errors: int = 0
    #: answers with no reward (a dimension the judge left unscored: an outage, a bug)
    no_reward: int = 0
    #: dimensions set to their minimum because the answer's own text made the verdict
    #: unreadable or made the judge refuse
    answer_caused_by_dimension: dict[str, int] = field(default_factory=dict)
    #: answers holding verdict-shaped or judge-addressed text, and the flags by kind
    flagged_answers: int = 0
    flags_by_kind: dict[str, int] = field(default_factory=dict)
    #: answers given the non-answer floor, and statements dropped as not grounded in the answer
    floored_answers: int = 0
    dropped_statements: int = 0
    #: judge replies set aside as copies of the answer, and re-asked
    copy_reasks: int = 0

    @property
    def answers_total(self) -> int:
        return self.items_total

    @property
    def answers_done_before(self) -> int:
        return self.items_done_before

    def add(self, row: dict[str, Any], *, resumed: bool = False) -> None:
        """Count a row: one scored now, or (``resumed``) one a previous run left in the
        output, so that means and the exit code describe the whole output."""
        if not resumed:
            self.answers_scored += 1
        if all(v is None for v in row["scores"].values()):
            self.all_unscored += 1
        if row["reward"] is None:
            self.no_reward += 1
        for name in row.get("answer_caused") or {}:
            self.answer_caused_by_dimension[name] = (
                self.answer_caused_by_dimension.get(name, 0) + 1)
        self.floored_answers += bool(row.get("floor"))
        faith = (row.get("details") or {}).get("faithfulness") or {}
        self.dropped_statements += int(faith.get("n_dropped") or 0)
        if row.get("flags"):
            self.flagged_answers += 1
            for kind, n in flag_counts(row["flags"]).items():
                self.flags_by_kind[kind] = self.flags_by_kind.get(kind, 0) + n
        self.copy_reasks += copy_reasks(row.get("details") or {})
        for name, value in row["scores"].items():
            if value is None:
                self.unscored_by_dimension[name] = self.unscored_by_dimension.get(name, 0) + 1
            else:
                self.score_sums[name] = self.score_sums.get(name, 0.0) + value
                self.score_counts[name] = self.score_counts.get(name, 0) + 1
        for reason in (row.get("unscored") or {}).values():
            self.unscored_reasons[_DIGITS.sub("#", str(reason))[:300]] += 1
        if row["reward"] is not None:
            self.reward_sum += row["reward"]
            self.reward_count += 1

    @property
    def exit_code(self) -> int:
        """Non-zero when a record was rejected, an answer has no reward (a dimension the
        judge left unscored), or a dimension hit an internal error, so scripts notice."""
        if self.interrupted:
            return 130
        return 1 if (self.rejected or self.no_reward or self.all_unscored
                     or self.internal_errors) else 0

    def as_dict(self) -> dict[str, Any]:
        """The summary as ``RUN/summary.json`` holds it."""
        return {"answers": self.answers_total, "already_done": self.answers_done_before,
                "changed": self.changed, "scored": self.answers_scored,
                "all_unscored": self.all_unscored, "rejected": len(self.rejected),
                "kept_from_other_runs": len(self.kept_from_elsewhere),
                "internal_errors": self.internal_errors, "no_reward": self.no_reward,
                "answer_caused": self.answer_caused_by_dimension,
                "flagged_answers": self.flagged_answers, "flags": self.flags_by_kind,
                "floored_answers": self.floored_answers,
                "dropped_statements": self.dropped_statements,
                "copy_reasks": self.copy_reasks,
                "unscored_reasons": dict(self.unscored_reasons.most_common(10)),
                "exit_code": self.exit_code, "wall_seconds": round(self.wall_seconds, 3),
                "stats": self.stats}


_DIGITS = re.compile(r"\d+(\.\d+)?")


#: the version of the reward's rules that are not options; raise it when such a rule changes
#: what a row holds (3: issue 21's grounding, checklist, floor and flagged-text rules; 4: checklist
#: marks grounded in the answer)
REWARD_RULES_VERSION = 4


def score_output_settings(options: ScoreOptions) -> dict[str, Any]:
    """The options that decide an output row (not where or how fast the judge runs). They
    are kept in the run store; resuming with different ones is refused (``StaleRunError``),
    since finished rows would be silently kept next to rows made another way."""
    data = options.model_dump(mode="json", exclude={"prompt_concurrency"})
    for key in TRANSPORT_KEYS:
        data["judge"].pop(key, None)
    for key in ("base_url", "api_key_env"):
        data["retrieval"].pop(key, None)
    # rules that are not options (how flagged text is judged, what counts as a copied
    # reply...) change rows too: their version is a setting, so a run directory scored
    # under older rules is refused instead of mixing rows made both ways
    data["reward_rules"] = REWARD_RULES_VERSION
    return data


def usage_by_dimension(by_tag: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Per-call counters summed per dimension (its tags are ``dimension.step``)."""
    out: dict[str, dict[str, int]] = {}
    for tag, counters in by_tag.items():
        dim = tag.split(".", 1)[0]
        if dim not in DIMENSION_NAMES:
            continue
        acc = out.setdefault(dim, {})
        for k, v in counters.items():
            acc[k] = acc.get(k, 0) + v
    return out


def _row_fingerprint(row: dict[str, Any]) -> str:
    return fingerprint(row.get("document"), row.get("query"), row.get("response"))


def read_score_input(
    input_path: str | Path, fields: FieldMap, *, prompts_path: str | Path | None = None,
    prompt_fields: FieldMap | None = None,
) -> tuple[list[PromptRecord], list[RecordError]]:
    """The input records to score (and the rejected ones), with documents joined from the
    prompts file for rows that carry only a ``prompt_id``."""
    rejected: list[RecordError] = []
    prompts = None
    bad_prompts: list[RecordError] = []
    if prompts_path is not None:
        # A bad prompts row is reported by ``sample``; here, a candidate that needs it is
        # rejected naming its prompt_id and, where there is one, the prompts row's fault.
        prompts, bad_prompts = read_prompts(prompts_path, prompt_fields or fields)
    records: list[PromptRecord] = []
    for item in group_records(iter_rows(input_path, id_field=fields.id), fields, prompts,
                              bad_prompts):
        if isinstance(item, RecordError):
            rejected.append(item)
        else:
            records.append(item)
    return records, rejected


def check_score_paths(input_path: str | Path, output_path: str | Path,
                      run_dir: str | Path | None = None,
                      prompts_path: str | Path | None = None) -> Path:
    """Refuse outputs that cannot be written (a directory, the input itself, a folder that
    cannot be made) before any work; returns the run directory."""
    directory = stage_run_dir(output_path, run_dir)
    check_output(output_path, inputs=(input_path, prompts_path),
                 extra=(rejected_path(output_path),), run_dir=directory)
    return directory


async def score_file(
    input_path: str | Path,
    output_path: str | Path,
    options: ScoreOptions,
    *,
    run_dir: str | Path | None = None,
    scorer: LongReward | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_answer: Callable[[dict[str, Any]], None] | None = None,
    redo: Redo = "none",
    prompts_path: str | Path | None = None,
    prompt_fields: FieldMap | None = None,
    batch: BatchRun | None = None,
) -> ScoreSummary:
    """Score ``input_path`` into ``output_path`` (JSONL), resumably; a coroutine:
    ``asyncio.run(score_file(...))`` from synchronous code.

    Each finished answer is committed to the run's SQLite store, then appended to the output
    (see :mod:`longreward.stages.runner`). A rerun repeats no completed judge call and writes
    no duplicate row; one with other output-deciding options raises ``StaleRunError``; an
    answer whose document, question or text changed since it was scored is scored again.

    ``redo="unscored"`` scores again the answers with an unscored dimension (e.g. after the
    judge was down: its failed calls are retried, its good ones come from the cache);
    ``redo="all"`` starts the output over, e.g. with new options, still reusing cached calls.
    ``prompts_path`` joins documents to rows that carry only a ``prompt_id`` (read with
    ``prompt_fields``, default: ``options.fields``). The summary's means and exit code cover
    the whole output, resumed rows included.

    ``batch`` sends the judge calls as rounds of batch requests (``longreward.judge.batch``);
    in file mode this raises ``BatchPending`` once a round is written.
    """
    t0 = time.perf_counter()
    summary = ScoreSummary()
    directory = check_score_paths(input_path, output_path, run_dir, prompts_path)
    records, rejected = read_score_input(input_path, options.fields, prompts_path=prompts_path,
                                         prompt_fields=prompt_fields)
    if not records and not rejected:
        raise InputFileError(f"{input_path} holds no records (it is empty or only blank "
                             "lines): nothing to score")
    own_scorer = scorer is None
    attached = False

    def attach(store: RunStore) -> None:
        nonlocal scorer, attached
        if batch is not None:
            if scorer is None:
                scorer = LongReward(batch.make_client(
                    options.judge, structured_output=options.judge.structured_output),
                    options=options)
            scorer.retriever = batch.track(scorer.retriever)
            batch.attach(store, retry_failed=redo != "none")
        elif scorer is None:
            scorer = LongReward(build_client(options, cache=store), options=options)
        elif scorer.client.cache is None:
            scorer.client.cache = store
            attached = True  # detached again below: the store is closed when this returns
        for rec in records:  # each document once, by hash: ``pairs`` reads it from here
            store.put_document(rec.document_key, rec.context)

    weights = options.weights
    contexts = {r.prompt_id: r.context for r in records} if options.keep_context else {}

    async def work(unit: Unit, left: list[str], commit: Callable[[dict[str, Any]], None]
                   ) -> None:
        rec: PromptRecord = unit.payload
        assert scorer is not None
        wanted = set(left)
        todo = PromptRecord(rec.prompt_id, rec.context, rec.query,
                            [c for c in rec.candidates if c.id in wanted], rec.label)
        judge_id = scorer.judge_identity

        def done(ans: ScoredAnswer) -> None:
            commit(ans.to_row(judge=judge_id, weights=weights,
                              context=contexts.get(ans.prompt_id)))

        await scorer.score_prompt(todo, done)

    def on_row(row: dict[str, Any], resumed: bool) -> None:
        summary.add(row, resumed=resumed)
        if not resumed and on_answer is not None:
            on_answer(row)

    units = [Unit(r.prompt_id, {c.id: fingerprint(r.document_key, r.query, c.response)
                                for c in r.candidates}, r) for r in records]
    spec = StageSpec(SCORE_STAGE, score_output_settings(options), _row_fingerprint,
                     redo_predicate=lambda row: bool(row.get("unscored")))
    try:
        await run_stage(
            spec, units, work, output_path=output_path, run_dir=directory,
            # batch mode: every prompt at once, so that each round holds all their calls
            concurrency=len(units) if batch else options.prompt_concurrency, redo=redo,
            rejected=rejected, outcome=summary, on_open=attach, on_row=on_row,
            supervise=batch.supervise if batch else None,
            on_start=(lambda o: on_start(o.items_total, o.items_done_before)) if on_start
            else None)
        if scorer is not None:
            summary.internal_errors = scorer.internal_errors
            summary.stats = scorer.client.snapshot()
            summary.stats["by_dimension"] = usage_by_dimension(summary.stats["by_tag"])
            if batch is not None:
                summary.stats["batch"] = {"rounds": batch.rounds,
                                          "local_seconds": batch.local_seconds}
    finally:
        if batch is not None:
            batch.close()
        if own_scorer and scorer is not None:
            await scorer.aclose()
        elif attached and scorer is not None:
            scorer.client.cache = None
        summary.wall_seconds = time.perf_counter() - t0
    # Beside the store, for whoever looks at the run directory later (library callers too).
    (directory / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n",
                                            encoding="utf-8")
    return summary
