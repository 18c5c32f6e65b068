"""``longreward pairs``: scored answers → one chosen/rejected pair per prompt, written as JSONL
(+ Parquet) with a dataset card. Selection itself is :mod:`longreward.preference.pairs`.

It makes no model call, so it is recomputed in full on every run (no store of its own); it
reads its inputs through the same readers as the other stages.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ScoreOptions
from ..errors import InputFileError, MissingDependencyError, RecordError, UsageError
from ..io.files import (
    check_output,
    default_run_dir,
    iter_rows,
    rejected_path,
    run_dirs_of,
    write_parquet_rows,
    write_rejected,
    write_rows,
)
from ..io.records import FieldMap, Prompt, read_prompts
from ..preference.formats import PairExample, describe_format, pair_to_row, render_prompt
from ..preference.listwise import (
    LISTWISE_TAG,
    ListwiseSelection,
    judge_settings,
    select_listwise,
)
from ..preference.pairs import (
    SKIP_REASONS,
    Candidate,
    PairOptions,
    Selection,
    candidate_from_row,
    iter_selections,
)
from ..store import STORE_FILENAME, OutputLock, RunStore


class DocumentSource:
    """Finds a prompt's document and question: in its scored rows, in the prompts file, or
    in a score run's store (by the document hash the rows record)."""

    def __init__(self, prompts: dict[str, Prompt] | None, run_dirs: list[Path]) -> None:
        self.prompts = prompts
        self.stores = [RunStore(d) for d in run_dirs if (d / STORE_FILENAME).exists()]

    def find(self, prompt_id: str, group: list[Candidate]) -> tuple[str | None, str | None]:
        context = next((c.context for c in group if c.context is not None), None)
        query = next((c.query for c in group if c.query), None)
        key = next((c.document for c in group if c.document), None)
        src = self.prompts.get(prompt_id) if self.prompts else None
        if context is None and src is not None:
            if key is not None and key != src.document_key:
                raise RecordError(f"prompt {prompt_id}", "document",
                                  f"its answers were scored against another document than the "
                                  f"prompts file holds now (hash {key} vs {src.document_key}); "
                                  "pass the prompts file they were scored with")
            context = src.context
        if not query and src is not None:
            query = src.query
        if context is None and key is not None:
            context = next((t for t in (s.get_document(key) for s in self.stores)
                            if t is not None), None)
        return context, query

    def close(self) -> None:
        for s in self.stores:
            s.close()


@dataclass
class PairsSummary:
    """What ``build_pairs`` did; printed by the CLI and written into the dataset card."""

    prompts: int = 0
    answers: int = 0
    pairs: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    empty_responses: int = 0
    errors: list[RecordError] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    card: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    judges: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    #: the ``min_candidates`` the prompts were held to (named in the fix)
    min_candidates: int = 0
    #: rows with neither ``reward`` nor ``scores``: answers that were never scored
    never_scored: int = 0

    @property
    def problem(self) -> str | None:
        """What went wrong, with the fix, when the run lost pairs for a reason the user can
        act on: no pair at all from some prompts, or prompts whose document was not found."""
        fixes = {
            "missing_prompt": "their document was not found: pass --prompts PROMPTS (the file "
                              "they were sampled or scored from), or --run-dir of the score "
                              "run (default: SCORED.run/), or score with --keep-context",
            "too_few_candidates": f"they have fewer than {self.min_candidates} scored "
                                  "answers: sample more answers per prompt, or lower "
                                  "--min-candidates",
            "mixed_dimensions": "their answers were scored on different dimensions or by "
                                "different judges: rescore the unscored ones with score "
                                "--retry-unscored",
            "all_unscored": "no answer has a reward: rerun score with --retry-unscored once "
                            "the judge works",
            "tie": "every answer got the same reward (is the judge the dry run, or does it "
                   "give every answer the same score?)",
            "below_margin": "the reward gaps are below --min-margin: lower it",
            "dimension_rule": "the --not-worse-on rule removed them: relax it",
            "identical_answers": "the highest and lowest answers are identical: sample at a "
                                 "higher temperature",
            "unjudged": "the judge gave no readable listwise verdict (the reasons are in the "
                        "dataset card, under listwise; is the endpoint up, and is its context "
                        "long enough? set listwise.max_prompt_tokens to show evidence instead)",
            "orders_disagree": "the judge named different answers in the two orders (position "
                               "bias): use a stronger judge, smaller groups "
                               "(listwise.group_size), or pointwise scoring",
        }
        missing = self.skipped.get("missing_prompt", 0)
        if missing:
            return f"{missing} prompt(s) gave no pair: {fixes['missing_prompt']}"
        if self.pairs == 0 and self.prompts:
            reason, n = self.skipped.most_common(1)[0] if self.skipped else ("", 0)
            return (f"0 pairs from {self.prompts} prompt(s); {n} skipped because "
                    f"{fixes.get(reason, reason)}")
        return None

    @property
    def exit_code(self) -> int:
        """Non-zero when a record was rejected or pairs were lost for a fixable reason."""
        return 1 if (self.errors or self.problem) else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "answers": self.answers,
            "pairs": self.pairs,
            "skipped": dict(self.skipped),
            "empty_responses": self.empty_responses,
            "rejected_records": len(self.errors),
            "never_scored": self.never_scored,
            "outputs": self.outputs,
            "card": self.card,
            "stats": self.stats,
        }


def _group_candidates(
    path: Path, summary: PairsSummary, *, need_scores: bool = True,
) -> tuple[dict[str, list[Candidate]], list[str]]:
    by_prompt: dict[str, list[Candidate]] = {}
    order: list[str] = []
    seen: set[str] = set()
    for label, item in iter_rows(path):
        if isinstance(item, RecordError):
            summary.errors.append(item)
            continue
        if need_scores and "reward" not in item and "scores" not in item:
            summary.never_scored += 1  # an input of ``score``, not its output
            summary.errors.append(RecordError(label, "reward", "this answer was never scored "
                                              "(no 'reward' or 'scores'): score the file "
                                              "first with `longreward score`"))
            continue
        try:
            cand = candidate_from_row(item, label)
        except RecordError as exc:
            summary.errors.append(exc)
            continue
        if cand.id in seen:
            summary.errors.append(RecordError(label, "id", f"duplicate id {cand.id!r}; kept the first"))
            continue
        seen.add(cand.id)
        summary.answers += 1
        if not cand.response.strip():
            # An empty answer cannot be written as chosen/rejected (trainers reject it); it
            # is counted and left out rather than failing the prompt.
            summary.empty_responses += 1
            continue
        if cand.prompt_id not in by_prompt:
            by_prompt[cand.prompt_id] = []
            order.append(cand.prompt_id)
        by_prompt[cand.prompt_id].append(cand)
    return by_prompt, order


def _prompt_messages(
    sel: Selection, group: list[Candidate], documents: DocumentSource, options: PairOptions,
) -> list[dict[str, str]] | None:
    assert sel.chosen is not None
    context, query = documents.find(sel.prompt_id, group)
    if context is None or not query:
        return None
    messages = []
    if options.system_prompt:
        messages.append({"role": "system", "content": options.system_prompt})
    messages.append({"role": "user", "content": render_prompt(context, query, options.prompt_template)})
    return messages


def _describe(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.pstdev(values), 4) if len(values) > 1 else 0.0,
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def _score_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    stats: dict[str, Any] = {
        key: _describe([r[key] for r in rows if r[key] is not None])
        for key in ("chosen_reward", "rejected_reward", "margin")
    }
    dims = sorted({d for r in rows for d in r["dimensions"]})
    per_dim = {}
    for d in dims:
        per_dim[d] = {
            side: _describe(
                [r[f"{side}_scores"][d] for r in rows
                 if (r[f"{side}_scores"] or {}).get(d) is not None]
            )
            for side in ("chosen", "rejected")
        }
    stats["dimensions"] = per_dim
    return stats


def build_pairs(
    scored_path: str | Path,
    output_path: str | Path,
    options: PairOptions | None = None,
    *,
    prompts_path: str | Path | None = None,
    prompt_fields: FieldMap | None = None,
    run_dirs: list[str | Path] | None = None,
    push_to_hub: str | None = None,
    private: bool = False,
    judge: ScoreOptions | None = None,
) -> PairsSummary:
    """Read scored answers, select one pair per prompt, write JSONL (+ Parquet) and a card.

    Pointwise selection (the default) makes no model call, so it is simply recomputed on
    every run. Output order follows the prompts file when one is given, else the order in
    which prompt ids first appear.

    The prompt of a pair needs its document. It is taken from the scored row (``context``),
    else from the prompts file, else from the run store of the score run that made the file:
    ``score`` keeps each document there once, by the hash its rows record, so the plain
    ``score`` → ``pairs`` chain needs no extra flag. ``run_dirs`` are the run directories to
    look in; by default those that wrote the scored file: ``SCORED.run/``, and any other
    ``score --run-dir`` recorded in ``SCORED.runs.json``.

    With ``options.selection == "listwise"`` the answers need no scores (a ``sample``
    output will do) and ``judge`` (the judge's ``ScoreOptions``) is asked instead; see
    ``build_pairs_async``. From a running event loop, await that one.
    """
    options = options or PairOptions()
    if options.selection == "listwise":
        return asyncio.run(build_pairs_async(
            scored_path, output_path, options, prompts_path=prompts_path,
            prompt_fields=prompt_fields, run_dirs=run_dirs, push_to_hub=push_to_hub,
            private=private, judge=judge))
    with _PairsBuild(scored_path, output_path, options, prompts_path, prompt_fields,
                     run_dirs) as build:
        return build.write(iter_selections(build.by_prompt, build.order, options),
                           push_to_hub, private)


async def build_pairs_async(
    scored_path: str | Path,
    output_path: str | Path,
    options: PairOptions | None = None,
    *,
    prompts_path: str | Path | None = None,
    prompt_fields: FieldMap | None = None,
    run_dirs: list[str | Path] | None = None,
    push_to_hub: str | None = None,
    private: bool = False,
    judge: ScoreOptions | None = None,
    run_dir: str | Path | None = None,
    on_start: Callable[[int], None] | None = None,
    on_prompt: Callable[[str], None] | None = None,
) -> PairsSummary:
    """``build_pairs`` as a coroutine. Listwise selection asks ``judge`` about every prompt
    (concurrently, as the client's limits allow), with the store of ``run_dir`` (default:
    ``OUTPUT.run/``) as the call cache, so a rerun repeats no call and gives the same
    pairs; ``on_start(prompts)`` and ``on_prompt(prompt_id)`` report progress."""
    options = options or PairOptions()
    with _PairsBuild(scored_path, output_path, options, prompts_path, prompt_fields,
                     run_dirs) as build:
        if options.selection == "pointwise":
            selections: list[Selection] = list(iter_selections(build.by_prompt, build.order,
                                                               options))
        else:
            if judge is None:
                raise UsageError("listwise selection asks a judge: give its options "
                                 "(--base-url/--model, or a score: section)")
            selections = await _listwise_selections(
                build, options, judge, Path(run_dir) if run_dir is not None
                else default_run_dir(Path(output_path).with_suffix(".jsonl")),
                on_start, on_prompt)
        return build.write(selections, push_to_hub, private)


async def _listwise_selections(build: _PairsBuild, options: PairOptions, judge: ScoreOptions,
                               run_dir: Path, on_start: Callable[[int], None] | None,
                               on_prompt: Callable[[str], None] | None) -> list[Selection]:
    from ..reward.scorer import build_client
    from ..store import cached_calls

    client = build_client(judge)
    settings = judge_settings(client, judge)
    listwise = options.listwise
    if listwise.language == "auto" and judge.language in ("en", "zh"):
        # the judge's language, as set for scoring (score --language), unless listwise sets one
        listwise = listwise.model_copy(update={"language": judge.language})
    run_dir.mkdir(parents=True, exist_ok=True)
    if on_start:
        on_start(len(build.order))

    async def one(pid: str) -> Selection:
        group = sorted(build.by_prompt[pid], key=lambda c: c.order)
        try:
            if len(group) < options.min_candidates:
                return Selection(pid, skip="too_few_candidates",
                                 detail=f"{len(group)} answers; need {options.min_candidates}")
            context, query = build.documents.find(pid, group)
            if context is None or not query:
                return Selection(pid, skip="missing_prompt")
            got = await select_listwise(settings, context=context, query=query,
                                        answers=[c.response for c in group],
                                        options=listwise)
            build.listwise[pid] = got
            if got.skip is not None:
                return Selection(pid, skip=got.skip, detail=got.reason or "")
            assert got.chosen is not None and got.rejected is not None
            return Selection(pid, chosen=group[got.chosen], rejected=group[got.rejected])
        except RecordError as exc:
            build.summary.errors.append(exc)
            return Selection(pid, skip="missing_prompt", detail=str(exc))
        finally:
            if on_prompt:
                on_prompt(pid)

    try:
        with cached_calls(client, run_dir):
            got = list(await asyncio.gather(*(one(pid) for pid in build.order)))
        # the listwise calls only (the client's format probe is not one)
        asked = client.stats.by_tag.get(LISTWISE_TAG)
        build.requests = {"requests": asked.requests if asked else 0,
                          "cache_hits": asked.cache_hits if asked else 0}
        return got
    finally:
        await client.aclose()


class _PairsBuild:
    """One pairs run: the output locks held, the inputs read and grouped by prompt, and the
    writing of whatever selections it is given (pointwise or listwise)."""

    def __init__(self, scored_path: str | Path, output_path: str | Path, options: PairOptions,
                 prompts_path: str | Path | None, prompt_fields: FieldMap | None,
                 run_dirs: list[str | Path] | None) -> None:
        self.scored_path, self.output_path = scored_path, Path(output_path)
        self.options = options
        self.prompts_path, self.prompt_fields, self.run_dirs = prompts_path, prompt_fields, run_dirs
        #: the listwise outcome per prompt (its rounds and costs), for the rows' metadata
        self.listwise: dict[str, ListwiseSelection] = {}
        #: judge requests sent by this run and answered from the cache (listwise)
        self.requests: dict[str, int] = {}
        self._stack = ExitStack()

    def __enter__(self) -> _PairsBuild:
        options, output_path, scored_path = self.options, self.output_path, self.scored_path
        check_output(output_path.with_suffix(".jsonl"), inputs=(scored_path, self.prompts_path),
                     extra=(output_path.with_suffix(".parquet"), card_path_for(output_path),
                            rejected_path(output_path)))
        # No reading a scored file that a score run is still writing, and no two pairs runs
        # writing one output (they share its temporary file).
        self._stack.enter_context(OutputLock(scored_path, reading=True))
        self._stack.enter_context(OutputLock(output_path.with_suffix(".jsonl")))
        self.started = time.perf_counter()
        summary = self.summary = PairsSummary(min_candidates=options.min_candidates)
        prompts = None
        if self.prompts_path is not None:
            prompts, bad = read_prompts(self.prompts_path, self.prompt_fields)
            summary.errors.extend(bad)
        listwise = options.selection == "listwise"
        self.by_prompt, self.order = _group_candidates(Path(scored_path), summary,
                                                       need_scores=not listwise)
        if summary.never_scored and not summary.answers:
            raise InputFileError(
                f"{scored_path} holds answers that were never scored (no row has 'reward' or "
                f"'scores'): score it first, `longreward score {scored_path} -o scored.jsonl`, "
                "then `longreward pairs scored.jsonl -o pairs.jsonl` (or pick pairs without "
                "scores: --selection listwise)")
        if not summary.answers and not summary.errors:
            raise InputFileError(f"{scored_path} holds no records (it is empty or only blank "
                                 "lines): nothing to pair")
        if prompts is not None:
            rank = {pid: i for i, pid in enumerate(prompts)}
            self.order.sort(key=lambda pid: rank.get(pid, len(rank)))
        summary.prompts = len(self.order)
        run_dirs = self.run_dirs
        if run_dirs is None:  # the run directories that wrote the scored file
            run_dirs = list(run_dirs_of(scored_path))
        self.documents = DocumentSource(prompts, [Path(d) for d in run_dirs])
        self._stack.callback(self.documents.close)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def write(self, selections: Iterable[Selection], push_to_hub: str | None,
              private: bool) -> PairsSummary:
        options, summary, output_path = self.options, self.summary, self.output_path
        rows: list[dict[str, Any]] = []
        judges: dict[str, dict[str, Any]] = {}
        for sel in selections:
            if sel.skip is not None:
                summary.skipped[sel.skip] += 1
                continue
            assert sel.chosen is not None and sel.rejected is not None
            try:
                messages = _prompt_messages(sel, self.by_prompt[sel.prompt_id], self.documents,
                                            options)
            except RecordError as exc:
                summary.errors.append(exc)
                continue
            if messages is None:
                summary.skipped["missing_prompt"] += 1
                continue
            for c in (sel.chosen, sel.rejected):
                if c.judge:
                    judges[json.dumps(c.judge, sort_keys=True)] = c.judge
            meta = {
                "prompt_id": sel.prompt_id,
                "chosen_id": sel.chosen.id,
                "rejected_id": sel.rejected.id,
                "chosen_reward": sel.chosen.reward,
                "rejected_reward": sel.rejected.reward,
                "margin": sel.margin,
                # None, not {}, for answers never scored (listwise): Parquet has no empty struct
                "chosen_scores": sel.chosen.scores or None,
                "rejected_scores": sel.rejected.scores or None,
                "dimensions": list(sel.chosen.dimensions),
            }
            listwise = self.listwise.get(sel.prompt_id)
            if listwise is not None:
                agreed, asked = listwise.position_consistency
                meta["selection"] = {"mode": "listwise", "answers": len(
                    self.by_prompt[sel.prompt_id]), "rounds": len(listwise.rounds),
                    "views": sorted({g.view for r in listwise.rounds for g in r}),
                    "orders_agreed": agreed, "orders_asked": asked,
                    # calls, not tokens: a rerun answers from the cache, and its rows must
                    # equal the first run's
                    "calls": listwise.usage.get("calls", 0)}
            pair = PairExample(prompt=messages, chosen=sel.chosen.response,
                               rejected=sel.rejected.response, meta=meta)
            rows.append(pair_to_row(pair, options.format, options.keys))

        summary.pairs = len(rows)
        summary.judges = list(judges.values())
        summary.stats = _score_stats(rows)
        if self.listwise:
            summary.stats["listwise"] = {**_listwise_stats(self.listwise.values()),
                                         **self.requests}
        # Both files are always derived from the output stem, so "-o pairs.jsonl" and
        # "-o pairs.parquet" produce the same two files.
        jsonl = output_path.with_suffix(".jsonl")
        write_rows(jsonl, rows)
        summary.outputs.append(str(jsonl))
        if options.write_parquet or output_path.suffix.lower() == ".parquet":
            pq_path = output_path.with_suffix(".parquet")
            write_parquet_rows(pq_path, rows)
            summary.outputs.append(str(pq_path))
        write_rejected(output_path, summary.errors)
        summary.seconds = time.perf_counter() - self.started
        card = write_card(output_path, options, summary, scored_path=str(self.scored_path))
        summary.card = str(card)
        if push_to_hub:
            push_rows_to_hub(rows, push_to_hub, card_path=card, private=private)
        return summary


def _listwise_stats(outcomes: Iterable[ListwiseSelection]) -> dict[str, Any]:
    """What listwise selection cost and how often the two orders agreed (the judge's
    position consistency: 1.0 means no position bias was seen)."""
    outcomes = list(outcomes)
    agreed = sum(o.position_consistency[0] for o in outcomes)
    asked = sum(o.position_consistency[1] for o in outcomes)
    usage: Counter[str] = Counter()
    for o in outcomes:
        usage.update(o.usage)
    reasons = list(dict.fromkeys(o.reason for o in outcomes if o.skip == "unjudged"))
    return {"prompts_judged": len(outcomes), "orders_agreed": agreed, "orders_asked": asked,
            "position_consistency": round(agreed / asked, 4) if asked else None,
            "unjudged_reasons": reasons[:5], **dict(usage)}


def card_path_for(output_path: str | Path) -> Path:
    """The dataset card lives beside the data: ``pairs.jsonl`` → ``pairs.md``."""
    return Path(output_path).with_suffix(".md")


def write_card(
    output_path: Path, options: PairOptions, summary: PairsSummary, *, scored_path: str
) -> Path:
    path = card_path_for(output_path)
    config = options.model_dump()
    fmt_note = describe_format(options.format, options.keys)
    lines = [
        "---",
        "tags: [dpo, preference, long-context, longreward]",
        "---",
        "",
        "# LongReward preference pairs",
        "",
        ("Built by `longreward pairs --selection listwise`: per prompt, a judge shown all the "
         "answers (in two orders, both of which must agree) named the best, *chosen*, and the "
         "worst, *rejected*; no reward was computed."
         if options.selection == "listwise" else
         "Built by `longreward pairs`: per prompt, the highest-reward answer is *chosen* and the "
         "lowest-reward answer *rejected* (LongReward, arXiv 2410.21252, §3.3), comparing only "
         "answers scored on the same dimensions."),
        "",
        f"- Format: {fmt_note}",
        f"- Scored input: `{scored_path}`",
        "- Judge: "
        + (", ".join(f"{j.get('provider', '?')}/{j.get('model', '?')}" for j in summary.judges) or "unknown"),
        "",
        "## Counts",
        "",
        "| | |",
        "|---|---|",
        f"| prompts | {summary.prompts} |",
        f"| scored answers read | {summary.answers} |",
        f"| pairs | {summary.pairs} |",
    ]
    for reason in SKIP_REASONS:
        if summary.skipped.get(reason):
            lines.append(f"| skipped: {reason} | {summary.skipped[reason]} |")
    if summary.empty_responses:
        lines.append(f"| empty answers left out | {summary.empty_responses} |")
    if summary.errors:
        lines.append(f"| rejected records | {len(summary.errors)} |")
    lines += ["", "## Score statistics", "", "```json", json.dumps(summary.stats, indent=2), "```",
              "", "## Config", "", "```json", json.dumps(config, indent=2), "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def push_rows_to_hub(
    rows: list[dict[str, Any]], repo_id: str, *, card_path: Path | None = None, private: bool = False
) -> None:
    """Upload the pairs as a Hub dataset (needs the ``hub`` extra and a logged-in token)."""
    try:
        import datasets
    except ImportError as exc:
        raise MissingDependencyError("--push-to-hub", "datasets", "hub") from exc
    ds = datasets.Dataset.from_list(rows)
    ds.push_to_hub(repo_id, private=private)
    if card_path is not None:
        from huggingface_hub import DatasetCard  # a dependency of datasets

        DatasetCard(card_path.read_text(encoding="utf-8")).push_to_hub(repo_id)
