"""Scoring many answers: runs the configured dimensions and shares per-document work.

``LongReward`` is the Python entry point; it reads and writes no file. The resumable
file-to-file stage behind ``longreward score`` (and the score step of ``longreward run``) is
:func:`longreward.stages.score.score_file`, built on it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._util.aio import gather_or_cancel
from ..config import ScoreOptions
from ..errors import LongRewardError, RecordError, UsageError
from ..io.records import Candidate, PromptRecord
from ..judge import (
    TOP_LOGPROBS,
    GenerateConfig,
    ModelAPI,
    ModelClient,
    ModelError,
    ReplyParseError,
    provider_spec,
)
from ..retrieval import Retriever, create_retriever
from ..text import Tokenizer, detect_language, get_tokenizer
from ..text.canonical import canonical_answer
from .dimensions import (
    DimensionInput,
    DimensionResult,
    DocumentWork,
    JudgeSettings,
    PromptWork,
    combine_reward,
    lower_of,
    registered,
)
from .injection import Flag, find_flags, strip_flagged

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
    #: verdict-shaped or judge-addressed text found in the answer (``reward.injection``)
    flags: list[Flag] = field(default_factory=list)
    #: why every dimension was set to 0 as a non-answer (``non_answer_floor``), else None
    floor: str | None = None

    @property
    def all_unscored(self) -> bool:
        """No dimension has a score (an answer-caused minimum is a score)."""
        return all(r.score is None for r in self.results.values())

    @property
    def dropped_statements(self) -> int:
        """Statements of the split not grounded in the answer, dropped (``text.grounding``)."""
        f = self.results.get("faithfulness")
        return int(f.details.get("n_dropped", 0)) if f is not None else 0

    @property
    def answer_caused(self) -> dict[str, str]:
        """Dimensions at their minimum because of the answer's text, with the reason."""
        return {n: r.reason or "" for n, r in self.results.items() if r.cause == "answer"}

    #: the keys ``to_row`` adds that are results, not inputs: what a reader of a scored file
    #: drops to use it as answers again (``eval robustness`` attacks a scored file)
    RESULT_FIELDS: ClassVar[tuple[str, ...]] = (
        "reward", "scores", "unscored", "answer_caused", "dimensions", "flags", "weights",
        "language", "details", "judge", "meta", "floor")

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
            "answer_caused": self.answer_caused,
            "dimensions": self.dimensions,
            "flags": [f.to_dict() for f in self.flags],
            "floor": self.floor,
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


def non_answer_floor(results: dict[str, DimensionResult], options: ScoreOptions) -> str | None:
    """Set every scored dimension to 0 when the answer is a non-answer, and say why (None
    when it is not one). A non-answer (issue 21: a real judge gave ``:`` logicality 10 and
    helpfulness 6) has all of:

    - no statement grounded in the answer (faithfulness found none; it must be configured);
    - no checklist point covered, even partly (checklist completeness; an empty checklist
      has none covered; in holistic mode, or without completeness, this test is skipped);
    - a helpfulness at or below ``options.non_answer_helpfulness`` (when helpfulness is
      configured; a helpfulness the judge left unscored means no floor: the reward is null
      anyway).

    The logicality of nothing is not 10, and nothing else the judge said about it counts.
    The judged scores stay in each dimension's details (``judged_score``)."""
    if not options.non_answer_floor:
        return None
    faith = results.get("faithfulness")
    if faith is None or faith.score is None or faith.details.get("n_statements", 1) != 0:
        return None
    comp = results.get("completeness")
    if comp is not None and comp.details.get("mode") == "checklist" and (
            comp.score is None or comp.details.get("n_covered", 1) != 0):
        return None
    helpful = results.get("helpfulness")
    if helpful is not None and (helpful.score is None
                                or helpful.score > options.non_answer_helpfulness):
        return None
    why = ("non-answer: no statement grounded in the answer"
           + (", no checklist point covered" if comp is not None
              and comp.details.get("mode") == "checklist" else "")
           + (f", helpfulness {helpful.score:g} ≤ {options.non_answer_helpfulness:g}"
              if helpful is not None else "") + ": every dimension at 0")
    for r in results.values():
        if r.score is not None:
            r.details.update(judged_score=r.score, floor=why)
            r.score = 0.0
    return why


def build_client(options: ScoreOptions, *, cache: Any = None) -> ModelClient:
    j = options.judge
    if j.model is None and not provider_spec(j.provider).placeholder:
        raise UsageError("no judge model: pass --model NAME (and --base-url URL for a server), "
                         "or --dry-run to check the plumbing offline")
    return j.client(j.create_apis("dry-run"), cache=cache,
                    structured_output=j.structured_output)


def build_retriever(options: ScoreOptions) -> Retriever:
    r = options.retrieval
    if r.method == "bm25":
        return create_retriever("bm25")
    if r.model is None:
        raise UsageError(f"--retrieval {r.method} needs --retrieval-model (an embedding model)")
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
        expected = self.options.verdicts == "expected"
        self.settings = JudgeSettings(
            client=self.client,
            generate=GenerateConfig(temperature=j.temperature, max_tokens=j.max_tokens,
                                    logprobs=TOP_LOGPROBS if expected else None),
            attempts=j.attempts, retry_temperature=j.retry_temperature,
            verdicts=self.options.verdicts)
        self._docs: OrderedDict[str, DocumentWork] = OrderedDict()
        self._prompts: OrderedDict[tuple[str, str], PromptWork] = OrderedDict()
        self._max_docs = max_cached_documents
        #: dimensions that ended unscored because of a bug rather than the judge
        self.internal_errors = 0
        self._home_loop: asyncio.AbstractEventLoop | None = None
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
        # The one place the answer enters: the judge sees (and the cache keys hold) its
        # canonical layout, so layout alone never moves the reward (text.canonical).
        layout = canonical_answer if self.options.canonical_layout else (lambda t: t)
        flags = find_flags(cand.response)
        judged = layout(cand.response)
        clean = layout(strip_flagged(cand.response, flags)) if flags else judged
        inp = DimensionInput(work, record.query, judged, self.settings, self.options)
        clean_inp = None if clean == judged else DimensionInput(
            work, record.query, clean, self.settings, self.options)
        names = self.options.dimensions
        done = await gather_or_cancel(*(self._dimension(n, inp, clean_inp, record, cand)
                                      for n in names))
        results = dict(zip(names, done, strict=True))
        floor = non_answer_floor(results, self.options)
        reward, used = combine_reward(results, self.options.weights,
                                      unscored=self.options.unscored_dimension)
        return ScoredAnswer(cand.id, record.prompt_id, record.query, cand.response,
                            work.language, results, reward, used, cand.extra,
                            record.document_key, flags, floor)

    async def _dimension(self, name: str, inp: DimensionInput, clean: DimensionInput | None,
                         record: PromptRecord, cand: Candidate) -> DimensionResult:
        """One dimension of one answer. An answer holding flagged text (addressed to its
        grader, or verdict-shaped: ``reward.injection``) is judged with and without the
        flagged spans and keeps the lower score (``lower_of``), so that text can only lower
        the reward: what it says never earns a statement or a covered point, and a judge it
        persuaded is outvoted by the same judge reading the answer without it. Issue 21 asks
        this of the holistic dimensions; the statement-based ones get it too, because a
        flagged clause may carry a claim ("X, as I have checked"): judging them only without
        it would hide the claim."""
        score = registered()[name].score
        if clean is None:
            return await self._guarded(name, score(inp), record, cand)
        both = await gather_or_cancel(self._guarded(name, score(inp), record, cand),
                                      self._guarded(name, score(clean), record, cand))
        return lower_of(*both)

    async def _guarded(self, name: str, job: Any, record: PromptRecord,
                       cand: Candidate) -> DimensionResult:
        """Judge failures are results already (unscored with the reason). What reaches here
        is either one of ours (``LongRewardError``: a fatal judge error, a missing extra),
        which stops the run with its message, or a bug in a provider, retriever or
        dimension. A bug ends this dimension unscored with ``internal_error`` set, its
        traceback is logged, and it is counted, so the run's exit code is not 0."""
        try:
            return await job
        except (ModelError, ReplyParseError) as exc:
            # a judge failure that escaped the dimension: a result, not a bug and not fatal
            return DimensionResult.unscored(name, f"judge error: {type(exc).__name__}: {exc}",
                                            cause=getattr(exc, "cause", "judge"))
        except LongRewardError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged with traceback, counted, in the row
            logger.error("internal error in %s of answer %s (prompt %s)", name, cand.id,
                         record.prompt_id, exc_info=True)
            self.internal_errors += 1
            return DimensionResult.unscored(
                name, f"internal error: {type(exc).__name__}: {exc}", cause="internal",
                internal_error=True)

    async def score_prompt(
        self, record: PromptRecord,
        on_result: Callable[[ScoredAnswer], None] | None = None,
    ) -> list[ScoredAnswer]:
        """Score every candidate of one prompt, sharing the document work between them."""
        return await self._on_home(self._score_prompt(record, on_result))

    async def _score_prompt(
        self, record: PromptRecord, on_result: Callable[[ScoredAnswer], None] | None,
    ) -> list[ScoredAnswer]:
        self.check_record(record)
        work = self._prompt_work(record)

        async def one(c: Candidate) -> ScoredAnswer:
            ans = await self._score_answer(work, record, c)
            if on_result is not None:
                on_result(ans)
            return ans

        return await gather_or_cancel(*(one(c) for c in record.candidates))

    def check_record(self, record: PromptRecord) -> None:
        limit = self.options.max_document_tokens
        if limit is not None:
            n = self.tokenizer.count(record.context)
            if n > limit:
                raise RecordError(record.label or record.prompt_id, self.options.fields.context,
                                  f"document has {n} tokens, above max_document_tokens={limit}; "
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
        return await self._on_home(self._score_many(list(records), on_result))

    async def _score_many(self, records: list[PromptRecord],
                          on_result: Callable[[ScoredAnswer], None] | None,
                          ) -> list[ScoredAnswer]:
        sem = asyncio.Semaphore(self.options.prompt_concurrency)

        async def run(rec: PromptRecord) -> list[ScoredAnswer]:
            async with sem:
                return await self._score_prompt(rec, on_result)

        nested = await gather_or_cancel(*(run(r) for r in records))
        return [a for group in nested for a in group]

    # -- event loops -------------------------------------------------------------------
    #
    # The judge's connections, semaphores and the shared per-document tasks belong to the
    # event loop they were made on. A scorer therefore has one *home* loop: the first loop
    # it is used on, or its own background loop when the synchronous API comes first.
    # Coroutines awaited on another live loop run on the home loop and are awaited from
    # there; nothing is silently bound to the wrong loop (0.1 dropped faithfulness with no
    # error when ``score_sync`` and ``asyncio.run`` were mixed).

    async def _on_home(self, coro: Any) -> Any:
        loop = asyncio.get_running_loop()
        home = self._home_loop
        if home is None:
            self._home_loop = home = loop
        if home is loop:
            return await coro
        if home.is_closed() or not home.is_running():
            coro.close()
            raise UsageError(
                "this LongReward was first used on another event loop, which has ended; its "
                "judge connections lived there. Fix: create the scorer inside the coroutine "
                "you pass to asyncio.run (async with LongReward(...) as scorer), or use the "
                "synchronous API (score_sync, score_many_sync) throughout")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, home))

    def score_sync(self, context: str, query: str, response: str, **kw: Any) -> ScoredAnswer:
        """``score`` for synchronous code, including code that already runs an event loop
        (a Jupyter cell): the work runs on the scorer's home loop, started in a background
        thread when the scorer has none yet."""
        return self._run_sync(self.score(context, query, response, **kw))

    def score_many_sync(self, records: Iterable[PromptRecord],
                        on_result: Callable[[ScoredAnswer], None] | None = None,
                        ) -> list[ScoredAnswer]:
        """``score_many`` for synchronous code."""
        return self._run_sync(self.score_many(records, on_result))

    def _run_sync(self, coro: Any) -> Any:
        if self._home_loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="longreward-sync",
                                      daemon=True)
            thread.start()
            self._sync_loop, self._sync_thread = loop, thread
            self._home_loop = loop
        home = self._home_loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is home or home.is_closed() or not home.is_running():
            coro.close()
            raise UsageError(
                "score_sync cannot run here: this LongReward lives on "
                + ("this very event loop, which a blocking call would stall. Fix: await "
                   "scorer.score(...) instead" if running is home else
                   "an event loop that has ended. Fix: create a new LongReward for "
                   "synchronous use"))
        return asyncio.run_coroutine_threadsafe(coro, home).result()

    def close(self) -> None:
        """Release the judge's connections and the loop ``score_sync`` started (the
        synchronous counterpart of ``aclose``)."""
        try:
            if self._home_loop is not None and not self._home_loop.is_closed():
                self._run_sync(self.aclose())
        finally:
            loop, thread = self._sync_loop, self._sync_thread
            if loop is not None:
                loop.call_soon_threadsafe(loop.stop)
                if thread is not None:
                    thread.join()
                loop.close()
            self._sync_loop = self._sync_thread = None

    async def aclose(self) -> None:
        home = self._home_loop
        loop = asyncio.get_running_loop()
        if home is not None and home is not loop and home.is_running():
            await self._on_home(self.client.aclose())
        else:
            await self.client.aclose()

    async def __aenter__(self) -> LongReward:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
