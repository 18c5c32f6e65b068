"""``RewardService``: LongReward as a reward for online RL, independent of any web framework.

The HTTP app (``_app``) and the in-process trainer adapters (``verl``, ``trl``) all go
through this one class, so an item is resolved, grouped, scored, masked and counted the same
way whichever door it came in by.

Sharing per-document work between requests. A trainer sends the 8–16 samples of a prompt as
separate requests, often at the same moment. Items that name the same (document, question)
— in one request or in many — reach the same ``LongReward`` scorer, which keeps the chunks,
the retrieval index and the completeness extraction of recent documents in memory and shares
in-flight work between concurrent answers. With a run directory, every judge call
(extraction, statement grades, scores) is also cached in the run store, so a restarted server
pays for none of them again; only the BM25 index is rebuilt (milliseconds).

Failures are results. An item whose dimensions all ended unscored, or which could not be
scored at all (unknown document, a query that does not start with its prompt, the deadline),
gets ``reward: null``, ``mask: 0`` and the reason — or, when the operator configured one, the
fallback reward, still with ``mask: 0``, logged and counted. Never a silent number.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import LongRewardError
from ..io.records import Candidate, PromptRecord, document_key, read_prompts
from ..reward.injection import flag_counts
from ..reward.scorer import LongReward, ScoredAnswer, build_client
from ..store import RunLock, RunStore
from ._options import ServeOptions

logger = logging.getLogger("longreward.serve")

#: run-store meta keys of registered prompts: ``serve.prompt.<id>`` → {document, query}
_META_PREFIX = "serve.prompt."

Status = Literal["scored", "unscored", "error"]


@dataclass
class ScoreItem:
    """One answer to score. The document and question come inline (``context``, ``query``)
    or from a registered prompt named by ``prompt_id``; an inline ``query`` wins over the
    registered one. ``error`` set by a protocol parser means the item cannot be scored."""

    response: str
    id: str | None = None
    prompt_id: str | None = None
    context: str | None = None
    query: str | None = None
    error: str | None = None


@dataclass
class ItemResult:
    """The outcome of one item. ``mask`` is 1 when ``reward`` is a judged reward to train
    on and 0 otherwise (then ``reason`` says why, and ``reward`` is null or, with
    ``fallback``, the configured fallback value)."""

    id: str
    status: Status
    reward: float | None
    mask: int
    reason: str | None = None
    scores: dict[str, float | None] = field(default_factory=dict)
    unscored: dict[str, str] = field(default_factory=dict)
    dimensions: list[str] = field(default_factory=list)
    fallback: bool = False
    prompt_id: str | None = None
    document: str | None = None
    #: verdict-shaped or judge-addressed text in the answer (``reward.injection``)
    flags: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "reward": self.reward, "mask": self.mask,
                "reason": self.reason, "fallback": self.fallback, "scores": self.scores,
                "unscored": self.unscored, "dimensions": self.dimensions,
                "prompt_id": self.prompt_id, "document": self.document, "flags": self.flags}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ItemResult:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class RegisteredPrompt:
    id: str
    document: str  # document_key of the context
    query: str | None


@dataclass
class Registration:
    id: str
    status: Literal["registered", "unchanged", "replaced", "conflict"]
    document: str
    reason: str | None = None


@dataclass
class ServiceStats:
    """Counters for the metrics endpoint and the adapters' logs (the judge's own counters —
    requests, cache hits, retries, tokens — are in ``scorer.client.snapshot()``)."""

    items: Counter[str] = field(default_factory=Counter)  # by status
    fallback: int = 0
    unscored_dimensions: Counter[str] = field(default_factory=Counter)
    deadline_exceeded: int = 0
    #: items that ended on one of our errors (a fatal judge error, a document too long)
    failed_groups: int = 0
    internal_errors: int = 0
    #: answers holding verdict-shaped or judge-addressed text, and the flags by kind
    flagged_items: int = 0
    flags_by_kind: Counter[str] = field(default_factory=Counter)


@dataclass
class ScoreOutcome:
    results: list[ItemResult]
    #: wall time spent waiting for the scorer (the rest of a request is service overhead)
    scoring_seconds: float


class RewardService:
    """Resolves items to documents, groups them by (document, question), scores each group
    with one ``LongReward`` call, and turns answers into masked rewards.

    ``open()`` takes the run directory (lock, store as the judge's call cache, registered
    prompts, the prompts file); ``aclose()`` releases it. Not thread-safe: use it from one
    event loop (the server's, or the adapters' background loop)."""

    def __init__(self, options: ServeOptions | None = None, *,
                 scorer: LongReward | None = None) -> None:
        self.options = options or ServeOptions()
        score_opts = self.options.score
        self.scorer = scorer or LongReward(build_client(score_opts), options=score_opts,
                                           max_cached_documents=self.options.cached_documents)
        self.stats = ServiceStats()
        self.store: RunStore | None = None
        self._lock: RunLock | None = None
        self._prompts: dict[str, RegisteredPrompt] = {}
        self._texts: dict[str, str] = {}  # document_key -> text, each document once
        self.opened = False
        #: rejected rows of the prompts file (reported by the CLI)
        self.prompt_file_errors: list[Any] = []

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Take the run directory and load the registered prompts. Idempotent."""
        if self.opened:
            return
        run_dir = self.options.run_dir
        if run_dir is not None:
            lock = RunLock(run_dir)
            lock.acquire()  # one process per run directory: a second server stops here
            try:
                self.store = RunStore(run_dir)
            except BaseException:
                lock.release()
                raise
            self._lock = lock
            if self.scorer.client.cache is None:
                self.scorer.client.cache = self.store
            self._load_registered()
        if self.options.prompts is not None:
            self.register_file(self.options.prompts)
        self.opened = True

    async def aclose(self) -> None:
        try:
            await self.scorer.aclose()
        finally:
            if self.store is not None:
                if self.scorer.client.cache is self.store:
                    self.scorer.client.cache = None
                self.store.close()
                self.store = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            self.opened = False

    # ------------------------------------------------------------------ documents

    @property
    def n_prompts(self) -> int:
        return len(self._prompts)

    @property
    def n_documents(self) -> int:
        return len(self._texts)

    def _load_registered(self) -> None:
        assert self.store is not None
        db = self.store.db
        rows = db.execute("SELECT key FROM meta WHERE substr(key, 1, ?) = ?",
                          (len(_META_PREFIX), _META_PREFIX)).fetchall()
        for (key,) in rows:
            entry = self.store.get_meta(key)
            pid = key[len(_META_PREFIX):]
            text = self.store.get_document(entry["document"]) if entry else None
            if text is None:  # a store edited by hand; the prompt has to be registered again
                logger.warning("registered prompt %r has no document in %s; register it again",
                               pid, self.store.path)
                continue
            self._texts[entry["document"]] = text
            self._prompts[pid] = RegisteredPrompt(pid, entry["document"], entry.get("query"))

    def register(self, prompt_id: str, context: str, query: str | None = None, *,
                 replace: bool = False) -> Registration:
        """Register (or re-register) a document under ``prompt_id``, with the question its
        answers respond to when known. Registering the same content again is a no-op; other
        content under a known id is a conflict unless ``replace``: a trainer's labels would
        otherwise silently point at a different document."""
        key = document_key(context)
        query = query if query and query.strip() else None
        old = self._prompts.get(prompt_id)
        if old is not None and (old.document, old.query) == (key, query):
            return Registration(prompt_id, "unchanged", key)
        if old is not None and not replace:
            return Registration(prompt_id, "conflict", old.document,
                                f"prompt id {prompt_id!r} is registered with another document or "
                                "question; give it a new id, or register with replace=true")
        self._texts[key] = context
        self._prompts[prompt_id] = RegisteredPrompt(prompt_id, key, query)
        if old is not None and old.document != key and not any(
                p.document == old.document for p in self._prompts.values()):
            del self._texts[old.document]  # no id names it any more
        if self.store is not None:
            self.store.put_document(key, context)
            self.store.set_meta(_META_PREFIX + prompt_id, {"document": key, "query": query})
        return Registration(prompt_id, "registered" if old is None else "replaced", key)

    def register_file(self, path: str | Path) -> list[Registration]:
        """Register every prompt of a prompts file (the file wins over earlier
        registrations of its ids). Rejected rows are kept in ``prompt_file_errors``."""
        prompts, errors = read_prompts(path, self.options.score.fields)
        self.prompt_file_errors.extend(errors)
        out = [self.register(p.id, p.context, p.query, replace=True) for p in prompts.values()]
        replaced = [r.id for r in out if r.status == "replaced"]
        if replaced:
            logger.warning("%s replaced %d earlier registration(s) with other content: %s",
                           path, len(replaced), ", ".join(replaced[:10]))
        return out

    def lookup(self, prompt_id: str) -> RegisteredPrompt | None:
        return self._prompts.get(prompt_id)

    def document_text(self, key: str) -> str | None:
        return self._texts.get(key)

    # ------------------------------------------------------------------ scoring

    def _resolve(self, item: ScoreItem) -> tuple[str, str, str] | str:
        """(document key, context, query) for an item, or why there is none."""
        if item.error:
            return item.error
        if not item.response.strip():
            return "empty response: there is no answer to judge"
        context, query = item.context, item.query
        if item.prompt_id is not None and context is None:
            reg = self._prompts.get(item.prompt_id)
            if reg is None:
                return (f"unknown prompt id {item.prompt_id!r}: register its document first "
                        "(serve --prompts FILE, or POST /documents)")
            query = query or reg.query
            if not query:
                return (f"prompt {item.prompt_id!r} was registered without a question and the "
                        "item gives none; register it with its query, or send query")
            return reg.document, self._texts[reg.document], query
        if context is None:
            return "no document: give context, or the prompt_id of a registered document"
        if not context.strip():
            return "empty document (context)"
        if not query or not query.strip():
            return "no question: give query (or register the prompt with its query)"
        return document_key(context), context, query

    async def score(self, items: list[ScoreItem], *,
                    timeout: float | None = None) -> ScoreOutcome:
        """Score ``items``; results in the same order. Items of the same (document,
        question) are scored as one prompt, so they share its per-document work. Items
        still unscored after ``timeout`` (default: ``request_timeout``) come back unscored
        with the deadline as the reason."""
        self.open()
        timeout = self.options.request_timeout if timeout is None else timeout
        results: list[ItemResult | None] = [None] * len(items)
        ids = [it.id if it.id is not None else str(i) for i, it in enumerate(items)]
        groups: dict[tuple[str, str], tuple[PromptRecord, list[int]]] = {}
        for i, item in enumerate(items):
            resolved = self._resolve(item)
            if isinstance(resolved, str):
                results[i] = ItemResult(ids[i], "error", None, 0, resolved,
                                        prompt_id=item.prompt_id)
                continue
            doc, context, query = resolved
            key = (doc, query)
            if key not in groups:
                label = item.prompt_id or f"inline:{key[0][:12]}"
                groups[key] = (PromptRecord(label, context, query, [], label=label), [])
            record, members = groups[key]
            # Candidate ids are the item's position: client ids need not be unique.
            record.candidates.append(Candidate(str(i), item.response))
            members.append(i)

        t0 = time.perf_counter()
        tasks = {asyncio.ensure_future(self.scorer.score_prompt(rec)): (rec, members)
                 for rec, members in groups.values()}
        done: set[asyncio.Future[Any]] = set()
        pending: set[asyncio.Future[Any]] = set()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        scoring_seconds = time.perf_counter() - t0

        for task, (rec, members) in tasks.items():
            if task in pending:
                self.stats.deadline_exceeded += len(members)
                reason = (f"deadline of {timeout:g}s exceeded before the judge finished (judge "
                          "calls that did finish are cached: a retry costs less)")
                for i in members:
                    results[i] = ItemResult(ids[i], "unscored", None, 0, reason,
                                            prompt_id=items[i].prompt_id,
                                            document=rec.document_key)
                continue
            exc = task.exception()
            if exc is not None:
                if isinstance(exc, LongRewardError):
                    self.stats.failed_groups += 1
                    reason = str(exc)
                else:  # a bug: keep the traceback in the log, the item says where to look
                    self.stats.internal_errors += 1
                    logger.error("internal error scoring prompt %s", rec.prompt_id,
                                 exc_info=exc)
                    reason = f"internal error: {type(exc).__name__}: {exc} (see the server log)"
                for i in members:
                    results[i] = ItemResult(ids[i], "error", None, 0, reason,
                                            prompt_id=items[i].prompt_id,
                                            document=rec.document_key)
                continue
            for ans in task.result():
                i = int(ans.id)
                results[i] = self._from_answer(ids[i], items[i].prompt_id, ans)

        final = [r for r in results if r is not None]
        assert len(final) == len(items)
        self._account(final)
        return ScoreOutcome(final, scoring_seconds)

    def _from_answer(self, item_id: str, prompt_id: str | None, ans: ScoredAnswer
                     ) -> ItemResult:
        scores = {n: r.score for n, r in ans.results.items()}
        unscored = {n: r.unscored_reason or "unscored" for n, r in ans.results.items()
                    if r.score is None}
        flags = [f.to_dict() for f in ans.flags]
        if ans.reward is not None:
            return ItemResult(item_id, "scored", ans.reward, 1, None, scores, unscored,
                              ans.dimensions, prompt_id=prompt_id, document=ans.document,
                              flags=flags)
        # No reward: a dimension the judge left unscored (one the answer made unreadable
        # scores its minimum and has a reward), so mask 0, never a mean over fewer dimensions.
        what = ("all dimensions unscored" if len(unscored) == len(scores) else
                f"no reward: {', '.join(unscored)} unscored by the judge")
        reasons = list(dict.fromkeys(unscored.values()))
        reason = (f"{what}: " + reasons[0] if len(reasons) == 1 else
                  f"{what}: " + "; ".join(f"{n}: {r}" for n, r in unscored.items()))
        return ItemResult(item_id, "unscored", None, 0, reason, scores, unscored, [],
                          prompt_id=prompt_id, document=ans.document, flags=flags)

    def _account(self, results: list[ItemResult]) -> None:
        """Count outcomes and apply the fallback reward (logged: one line per request)."""
        fallback = self.options.fallback_reward
        missing = [r for r in results if r.reward is None]
        for r in results:
            self.stats.items[r.status] += 1
            for name in r.unscored:
                self.stats.unscored_dimensions[name] += 1
            if r.flags:
                self.stats.flagged_items += 1
                self.stats.flags_by_kind.update(flag_counts(r.flags))
        if fallback is not None and missing:
            for r in missing:
                r.reward, r.fallback = fallback, True
            self.stats.fallback += len(missing)
            logger.warning("%d of %d item(s) got the fallback reward %g (mask 0); first: "
                           "item %s: %s", len(missing), len(results), fallback, missing[0].id,
                           missing[0].reason)
        elif missing:
            logger.info("%d of %d item(s) have no reward (mask 0); first: item %s: %s",
                        len(missing), len(results), missing[0].id, missing[0].reason)
