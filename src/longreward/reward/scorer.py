"""Scoring many answers: runs the four dimensions and shares per-document work.

``LongReward`` is the Python entry point; ``score_file`` is the resumable file-to-file stage
behind ``longreward score`` (and the score step of ``longreward run``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import DIMENSION_NAMES, ScoreOptions
from ..errors import RecordError
from ..io.files import (
    ResumableJsonlWriter,
    default_run_dir,
    iter_rows,
    write_rejected,
    write_rows,
)
from ..io.records import Candidate, PromptRecord, group_records, load_prompts
from ..judge import GenerateConfig, ModelAPI, ModelClient, canonical_provider
from ..retrieval import Retriever, create_retriever
from ..store import TRANSPORT_KEYS, check_stage_settings
from ..text import Tokenizer, detect_language, get_tokenizer
from .dimensions import (
    DimensionResult,
    DocumentWork,
    JudgeSettings,
    PromptWork,
    combine_reward,
    score_completeness,
    score_faithfulness,
    score_helpfulness,
    score_logicality,
)

SCORE_STAGE = "score"

logger = logging.getLogger(__name__)


@dataclass
class ScoredAnswer:
    id: str
    prompt_id: str
    query: str
    response: str
    language: str
    results: dict[str, DimensionResult]
    reward: float | None
    dimensions: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    #: short hash of the document the answer was scored against (``PromptRecord.document_key``)
    document: str = ""

    @property
    def all_unscored(self) -> bool:
        return not self.dimensions

    def to_row(self, *, judge: dict[str, Any] | None = None, weights: dict[str, float] | None = None,
               context: str | None = None) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": self.id,
            "prompt_id": self.prompt_id,
            "document": self.document,
            "query": self.query,
            "response": self.response,
            "reward": self.reward,
            "scores": {n: r.score for n, r in self.results.items()},
            "unscored": {n: r.unscored_reason for n, r in self.results.items()
                         if r.score is None},
            "dimensions": self.dimensions,
            "weights": weights,
            "language": self.language,
            "details": {n: r.details for n, r in self.results.items()},
            "judge": judge or {},
        }
        if self.meta:
            row["meta"] = self.meta
        if context is not None:
            row["context"] = context
        return row


def build_client(options: ScoreOptions, *, cache: Any = None) -> ModelClient:
    j = options.judge
    if j.model is None and canonical_provider(j.provider) != "dry_run":
        raise ValueError("no judge model: pass --model NAME (and --base-url URL for a server)")
    return j.client(j.create_apis("dry-run"), cache=cache,
                    structured_output=j.structured_output)


def build_retriever(options: ScoreOptions) -> Retriever:
    r = options.retrieval
    if r.method == "bm25":
        return create_retriever("bm25")
    if r.model is None:
        raise ValueError(f"--retrieval {r.method} needs --retrieval-model (an embedding model)")
    embedder = r.hybrid_with if r.method == "hybrid" else r.method
    opts: dict[str, Any] = {}
    if embedder == "dense":
        opts["model_name_or_path"] = r.model
    else:
        opts["model"] = r.model
        opts["base_url"] = r.base_url or (options.judge.base_urls[0]
                                          if options.judge.base_urls else None)
        if r.api_key_env:
            opts["api_key"] = os.environ.get(r.api_key_env)
    if r.method == "hybrid":
        opts["embedder"] = embedder
    return create_retriever(r.method, **opts)


class LongReward:
    """The LongReward scorer.

    >>> scorer = LongReward(judge=ModelClient(create_apis("dry_run", "dry-run")))
    >>> answer = scorer.score_sync(context, query, response)
    """

    def __init__(
        self,
        judge: ModelClient | ModelAPI | None = None,
        *,
        options: ScoreOptions | None = None,
        retriever: Retriever | None = None,
        tokenizer: Tokenizer | None = None,
        max_cached_documents: int = 64,
    ) -> None:
        self.options = options or ScoreOptions()
        if judge is None:
            judge = build_client(self.options)
        self.client = judge if isinstance(judge, ModelClient) else ModelClient(judge)
        self.retriever = retriever or build_retriever(self.options)
        self.tokenizer = tokenizer or get_tokenizer(self.options.tokenizer)
        if tokenizer is None and self.options.tokenizer is not None:
            # Load now: a wrong --tokenizer is a usage error at start, not an unscored
            # faithfulness and completeness on every answer of the run.
            self.tokenizer.count("tokenizer check")
        j = self.options.judge
        self.settings = JudgeSettings(
            client=self.client,
            generate=GenerateConfig(temperature=j.temperature, max_tokens=j.max_tokens),
            attempts=j.attempts, retry_temperature=j.retry_temperature)
        self._docs: OrderedDict[str, DocumentWork] = OrderedDict()
        self._prompts: OrderedDict[tuple[str, str], PromptWork] = OrderedDict()
        self._max_docs = max_cached_documents
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        self._sync_thread: threading.Thread | None = None

    @property
    def judge_identity(self) -> dict[str, Any]:
        return self.client.apis[0].cache_identity()

    # -- shared work -------------------------------------------------------------------

    def _prompt_work(self, record: PromptRecord) -> PromptWork:
        dkey = record.document_key
        doc = self._docs.get(dkey)
        if doc is None:
            doc = DocumentWork(record.context, self.tokenizer, self.retriever,
                               retrieval_chunk_tokens=self.options.retrieval.chunk_tokens,
                               extraction_chunk_tokens=self.options.completeness_chunk_tokens)
            self._docs[dkey] = doc
        self._docs.move_to_end(dkey)
        pkey = (dkey, record.query)
        work = self._prompts.get(pkey)
        if work is None:
            work = PromptWork(doc, record.query, self._language(record))
            self._prompts[pkey] = work
        self._prompts.move_to_end(pkey)
        # Bounded: a run over thousands of documents keeps only recent ones in memory.
        while len(self._docs) > self._max_docs:
            self._docs.popitem(last=False)
        while len(self._prompts) > self._max_docs * 4:
            self._prompts.popitem(last=False)
        return work

    def _language(self, record: PromptRecord) -> str:
        if self.options.language != "auto":
            return self.options.language
        # The question decides the judge's language; the document breaks near-ties.
        return detect_language(record.query + "\n" + record.context[:2000])

    # -- scoring -----------------------------------------------------------------------

    async def _score_answer(self, work: PromptWork, record: PromptRecord,
                            cand: Candidate) -> ScoredAnswer:
        dims = self.options.dimensions
        s = self.settings
        jobs: dict[str, Any] = {}
        if "helpfulness" in dims:
            jobs["helpfulness"] = score_helpfulness(record.query, cand.response,
                                                    language=work.language, settings=s)
        if "logicality" in dims:
            jobs["logicality"] = score_logicality(record.query, cand.response,
                                                  language=work.language, settings=s)
        if "faithfulness" in dims:
            jobs["faithfulness"] = score_faithfulness(work, cand.response, settings=s,
                                                      top_k=self.options.retrieval.top_k,
                                                      grade_batch_size=self.options.grade_batch_size)
        if "completeness" in dims:
            jobs["completeness"] = score_completeness(work, cand.response, settings=s)
        done = await asyncio.gather(*(self._guarded(name, job, record, cand)
                                      for name, job in jobs.items()))
        results = dict(zip(jobs, done, strict=True))
        results = {d: results[d] for d in dims}  # stable order in output
        reward, used = combine_reward(results, self.options.weights)
        return ScoredAnswer(cand.id, record.prompt_id, record.query, cand.response,
                            work.language, results, reward, used, cand.extra,
                            record.document_key)

    @staticmethod
    async def _guarded(name: str, job: Any, record: PromptRecord,
                       cand: Candidate) -> DimensionResult:
        """Judge failures are results already; this catches the unexpected (a provider or
        retriever raising something unforeseen) so that one answer's dimension ends unscored
        with the reason instead of the whole run crashing."""
        try:
            return await job
        except Exception as exc:  # noqa: BLE001 - reported in the row and the log
            logger.warning("%s of answer %s (prompt %s) failed", name, cand.id,
                           record.prompt_id, exc_info=True)
            return DimensionResult.unscored(
                name, f"internal error: {type(exc).__name__}: {exc}")

    async def score_prompt(
        self, record: PromptRecord,
        on_result: Callable[[ScoredAnswer], None] | None = None,
    ) -> list[ScoredAnswer]:
        """Score every candidate of one prompt, sharing the document work between them."""
        self.check_record(record)
        work = self._prompt_work(record)

        async def one(c: Candidate) -> ScoredAnswer:
            ans = await self._score_answer(work, record, c)
            if on_result is not None:
                on_result(ans)
            return ans

        return list(await asyncio.gather(*(one(c) for c in record.candidates)))

    def check_record(self, record: PromptRecord) -> None:
        limit = self.options.max_context_tokens
        if limit is not None:
            n = self.tokenizer.count(record.context)
            if n > limit:
                raise RecordError(record.label or record.prompt_id, self.options.fields.context,
                                  f"document has {n} tokens, above max_context_tokens={limit}; "
                                  "raise the limit or shorten the document")

    async def score(self, context: str, query: str, response: str, *,
                    prompt_id: str = "p0", answer_id: str = "a0") -> ScoredAnswer:
        """Score one answer. Repeated calls on the same document reuse its chunks and index."""
        rec = PromptRecord(prompt_id, context, query, [Candidate(answer_id, response)])
        return (await self.score_prompt(rec))[0]

    async def score_many(
        self, records: Iterable[PromptRecord],
        on_result: Callable[[ScoredAnswer], None] | None = None,
    ) -> list[ScoredAnswer]:
        """Score many prompts, ``options.prompt_concurrency`` at a time."""
        sem = asyncio.Semaphore(self.options.prompt_concurrency)

        async def run(rec: PromptRecord) -> list[ScoredAnswer]:
            async with sem:
                return await self.score_prompt(rec, on_result)

        nested = await asyncio.gather(*(run(r) for r in records))
        return [a for group in nested for a in group]

    def score_sync(self, context: str, query: str, response: str, **kw: Any) -> ScoredAnswer:
        """``score`` for synchronous code, including code that already runs an event loop
        (a Jupyter cell). Calls run on one background event loop owned by this scorer, so
        the judge's connections and the per-document work survive from call to call; do not
        mix ``score_sync`` with awaiting this scorer's coroutines on another loop."""
        return self._run_sync(self.score(context, query, response, **kw))

    def _run_sync(self, coro: Any) -> Any:
        if self._sync_loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="longreward-sync",
                                      daemon=True)
            thread.start()
            self._sync_loop, self._sync_thread = loop, thread
        return asyncio.run_coroutine_threadsafe(coro, self._sync_loop).result()

    def close(self) -> None:
        """Release the judge's connections and the loop ``score_sync`` started (the
        synchronous counterpart of ``aclose``)."""
        try:
            self._run_sync(self.aclose())
        finally:
            loop, thread = self._sync_loop, self._sync_thread
            assert loop is not None
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join()
            loop.close()
            self._sync_loop = self._sync_thread = None

    async def aclose(self) -> None:
        await self.client.aclose()


# ---------------------------------------------------------------------------- file stage


@dataclass
class ScoreSummary:
    answers_total: int = 0
    answers_done_before: int = 0
    answers_scored: int = 0
    all_unscored: int = 0
    rejected: list[RecordError] = field(default_factory=list)
    unscored_by_dimension: dict[str, int] = field(default_factory=dict)
    score_sums: dict[str, float] = field(default_factory=dict)
    score_counts: dict[str, int] = field(default_factory=dict)
    reward_sum: float = 0.0
    reward_count: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0
    interrupted: bool = False
    #: finished answers whose input (document, question or answer) changed: scored again
    changed: int = 0

    def add(self, row: dict[str, Any], *, resumed: bool = False) -> None:
        """Count a row: one scored now, or (``resumed``) one a previous run left in the
        output, so that means and the exit code describe the whole output."""
        if not resumed:
            self.answers_scored += 1
        if not row["dimensions"]:
            self.all_unscored += 1
        for name, value in row["scores"].items():
            if value is None:
                self.unscored_by_dimension[name] = self.unscored_by_dimension.get(name, 0) + 1
            else:
                self.score_sums[name] = self.score_sums.get(name, 0.0) + value
                self.score_counts[name] = self.score_counts.get(name, 0) + 1
        if row["reward"] is not None:
            self.reward_sum += row["reward"]
            self.reward_count += 1

    @property
    def exit_code(self) -> int:
        """Non-zero when a record was rejected or an answer ended unscored on every
        dimension, so scripts notice."""
        if self.interrupted:
            return 130
        return 1 if (self.rejected or self.all_unscored) else 0


def score_output_settings(options: ScoreOptions) -> dict[str, Any]:
    """The options that decide an output row (not where or how fast the judge runs). They
    are kept in the run store; resuming with different ones is refused (``StaleRunError``),
    since finished rows would be silently kept next to rows made another way."""
    data = options.model_dump(mode="json", exclude={"prompt_concurrency"})
    for key in TRANSPORT_KEYS:
        data["judge"].pop(key, None)
    for key in ("base_url", "api_key_env"):
        data["retrieval"].pop(key, None)
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


async def score_file(
    input_path: str | Path,
    output_path: str | Path,
    options: ScoreOptions,
    *,
    run_dir: str | Path | None = None,
    scorer: LongReward | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_answer: Callable[[dict[str, Any]], None] | None = None,
    redo: Literal["none", "unscored", "all"] = "none",
    prompts_path: str | Path | None = None,
) -> ScoreSummary:
    """Score ``input_path`` into ``output_path`` (JSONL), resumably.

    Each finished answer is committed to the run's SQLite store, then appended to the output.
    A rerun first appends rows the store has but the output lacks (a kill between the two
    writes), then skips finished answers; the call cache means no completed judge call is
    repeated either. A rerun with other output-deciding options raises ``StaleRunError``.

    ``redo="unscored"`` scores again the answers with an unscored dimension (e.g. after the
    judge was down: its failed calls are retried, its good ones come from the cache);
    ``redo="all"`` starts the output over, e.g. with new options, still reusing cached calls.
    The summary's means and exit code cover the whole output, resumed rows included.
    """
    from ..store import RunStore

    if redo not in ("none", "unscored", "all"):
        raise ValueError(f"redo must be none, unscored or all, not {redo!r}")
    t0 = time.perf_counter()
    summary = ScoreSummary()
    store = RunStore(Path(run_dir) if run_dir else default_run_dir(output_path))
    own_scorer = scorer is None
    attached = False
    try:
        if redo == "all":
            store.forget(SCORE_STAGE)
        check_stage_settings(store, SCORE_STAGE, score_output_settings(options),
                             where=str(store.path.parent))
        if redo == "unscored":
            store.forget(SCORE_STAGE, [str(r["id"]) for r in store.rows(SCORE_STAGE)
                                       if r.get("unscored")])
        if redo != "none" and Path(output_path).exists():
            # The output keeps exactly the rows still finished; the redone ones follow.
            write_rows(output_path, store.rows(SCORE_STAGE))
        if scorer is None:
            scorer = LongReward(build_client(options, cache=store), options=options)
        elif scorer.client.cache is None:
            scorer.client.cache = store
            attached = True  # detached again below: the store is closed when this returns
        judge_id = scorer.judge_identity
        weights = options.weights
        records: list[PromptRecord] = []
        prompts = None
        if prompts_path is not None:
            f = options.fields
            # A bad prompts row is not a record of this stage (``sample`` reports it); a
            # candidate that needs it is rejected below, naming its prompt_id.
            prompts = load_prompts(prompts_path, field_id=f.id, field_context=f.context,
                                   field_query=f.query)
        for item in group_records(iter_rows(input_path, id_field=options.fields.id),
                                  options.fields, prompts):
            if isinstance(item, RecordError):
                summary.rejected.append(item)
            else:
                records.append(item)
        write_rejected(output_path, summary.rejected)
        summary.answers_total = sum(len(r.candidates) for r in records)
        changed = _changed_since_scored(store, records)
        if changed:
            # A finished row belongs to the input it was scored from: an edited answer,
            # question or document is scored again instead of keeping a stale score.
            store.forget(SCORE_STAGE, changed)
            write_rows(output_path, store.rows(SCORE_STAGE))
            summary.changed = len(changed)

        with ResumableJsonlWriter(output_path) as writer:
            finished = store.finished_ids(SCORE_STAGE)
            wanted = {c.id for r in records for c in r.candidates}
            for row in store.rows(SCORE_STAGE):  # repair: committed but not yet in the file
                writer.write(row)
                if str(row["id"]) in wanted:
                    summary.add(row, resumed=True)
            todo: list[PromptRecord] = []
            for rec in records:
                left = [c for c in rec.candidates if c.id not in finished]
                summary.answers_done_before += len(rec.candidates) - len(left)
                if left:
                    todo.append(PromptRecord(rec.prompt_id, rec.context, rec.query, left,
                                             rec.label))
            if on_start:
                on_start(summary.answers_total, summary.answers_done_before)

            contexts = {r.prompt_id: r.context for r in todo} if options.keep_context else {}

            def done(ans: ScoredAnswer) -> None:
                row = ans.to_row(judge=judge_id, weights=weights,
                                 context=contexts.get(ans.prompt_id))
                store.record(SCORE_STAGE, ans.id, row)
                writer.write(row)
                summary.add(row)
                if on_answer:
                    on_answer(row)

            sem = asyncio.Semaphore(options.prompt_concurrency)

            async def run(rec: PromptRecord) -> None:
                async with sem:
                    try:
                        await scorer.score_prompt(rec, done)
                    except RecordError as exc:
                        summary.rejected.append(exc)

            try:
                await asyncio.gather(*(run(r) for r in todo))
            except asyncio.CancelledError:
                summary.interrupted = True
                raise
            finally:
                write_rejected(output_path, summary.rejected)
        summary.stats = scorer.client.snapshot()
        summary.stats["by_dimension"] = usage_by_dimension(summary.stats["by_tag"])
    finally:
        if own_scorer and scorer is not None:
            await scorer.aclose()
        elif attached and scorer is not None:
            scorer.client.cache = None
        store.close()
        summary.wall_seconds = time.perf_counter() - t0
    return summary


def _changed_since_scored(store: Any, records: list[PromptRecord]) -> list[str]:
    """Ids of finished answers whose document, question or answer differ from the input now.
    Rows written before rows recorded their document compare on question and answer only."""
    now = {c.id: (r.document_key, r.query, c.response) for r in records for c in r.candidates}
    changed = []
    for row in store.rows(SCORE_STAGE):
        cid = str(row.get("id"))
        if cid not in now:
            continue
        document, query, response = now[cid]
        if (row.get("query") != query or row.get("response") != response
                or row.get("document", document) != document):
            changed.append(cid)
    return changed
