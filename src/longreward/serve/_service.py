"""``RewardService``: LongReward as a reward for online RL, independent of any web framework.

The HTTP app (``_app``) and the in-process trainer adapters (``verl``, ``trl``) all go
through this one class, so an item is resolved, grouped, scored, masked and counted the same
way whichever door it came in by.

Sharing per-document work between requests. A trainer sends the 8–16 samples of a prompt as
separate requests, often at the same moment. Items that name the same (document, question)
— in one request or in many — reach the same ``LongReward`` scorer, which keeps the chunks,
the retrieval index and the completeness extraction of recent documents in memory and shares
in-flight work between concurrent answers.

Sharing between processes. With a run directory, the run store holds every judge call
(extraction, statement grades, scores), the registered prompts and the judged rewards, and
any number of processes may use it at once (``store.ServiceLock``): the reward workers of one
trainer, several servers. A judge call one of them is making is claimed in the store, so the
others wait for its result instead of paying for it again; a finished one is a cache hit for
all of them, after a restart too. What each process keeps to itself: the chunks and BM25 index
of its recent documents (rebuilt in milliseconds) and its in-flight bookkeeping.

Failures are results. An item that could not be scored (unknown prompt, empty answer, a
judge that failed or ran past the deadline — ``LongReward`` then gives no reward) has
``mask: 0`` and the reason, and its ``reward`` is
- ``fallback_reward`` when the operator configured one, on every route;
- else, for a protocol whose trainer needs a number (``fill="neutral"``: OpenRLHF, slime,
  verl), the neutral reward of its prompt (``_neutral``);
- else null (the native ``/score``, TRL).
Every stand-in is logged and counted. Never a silent number.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import LongRewardError
from ..io.records import Candidate, PromptRecord, document_key, read_prompts
from ..reward.injection import copy_reasks, flag_counts
from ..reward.scorer import LongReward, ScoredAnswer, build_client
from ..store import MEMORY, PROMPT_META_PREFIX, RunStore, ServiceLock
from ._neutral import Neutral, NeutralRewards
from ._options import ServeOptions

logger = logging.getLogger("longreward.serve")

Status = Literal["scored", "unscored", "error"]
#: what an item that cannot be scored receives (without ``fallback_reward``): null, or the
#: neutral reward for trainers that need a number
Fill = Literal["null", "neutral"]


@dataclass
class ScoreItem:
    """One answer to score. The document and question come inline (``context``, ``query``)
    or from a registered prompt named by ``prompt_id``; an inline ``query`` wins over the
    registered one. ``error`` set by a protocol parser means the item cannot be scored.
    ``prompt_seen`` is the share of its prompt the policy saw (a trainer that cut a long
    prompt), when the protocol can tell."""

    response: str
    id: str | None = None
    prompt_id: str | None = None
    context: str | None = None
    query: str | None = None
    error: str | None = None
    prompt_seen: float | None = None


@dataclass
class ItemResult:
    """The outcome of one item. ``mask`` is 1 when ``reward`` is a judged reward to train
    on and 0 otherwise: then ``reason`` says why, and ``reward`` is null or a stand-in
    (``fallback`` true; ``fallback_basis`` says which: "fixed", or the neutral reward's
    basis "group", "running mean", "prior")."""

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
    fallback_basis: str | None = None
    prompt_seen: float | None = None
    #: verdict-shaped or judge-addressed text in the answer (``reward.injection``)
    flags: list[dict[str, Any]] = field(default_factory=list)
    #: why the answer got the non-answer floor (``reward.scorer.non_answer_floor``)
    floor: str | None = None
    #: statements of the split dropped as not grounded in the answer
    dropped_statements: int = 0
    #: judge replies set aside as copies of the answer, and re-asked
    copy_reasks: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "reward": self.reward, "mask": self.mask,
                "reason": self.reason, "fallback": self.fallback,
                "fallback_basis": self.fallback_basis, "scores": self.scores,
                "unscored": self.unscored, "dimensions": self.dimensions,
                "prompt_id": self.prompt_id, "document": self.document,
                "prompt_seen": self.prompt_seen, "flags": self.flags, "floor": self.floor,
                "dropped_statements": self.dropped_statements,
                "copy_reasks": self.copy_reasks}

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
    #: items sent ``fallback_reward``
    fallback: int = 0
    #: items sent the neutral reward, by its basis
    neutral: Counter[str] = field(default_factory=Counter)
    unscored_dimensions: Counter[str] = field(default_factory=Counter)
    deadline_exceeded: int = 0
    #: scored items whose prompt the trainer had cut (the policy saw part of it)
    truncated_prompts: int = 0
    #: items that ended on one of our errors (a fatal judge error, a document too long)
    failed_groups: int = 0
    internal_errors: int = 0
    #: answers holding verdict-shaped or judge-addressed text, and the flags by kind
    flagged_items: int = 0
    flags_by_kind: Counter[str] = field(default_factory=Counter)
    #: answers given the non-answer floor, and statements dropped as not grounded
    floored_items: int = 0
    dropped_statements: int = 0


@dataclass
class ScoreOutcome:
    results: list[ItemResult]
    #: wall time spent waiting for the scorer (the rest of a request is service overhead)
    scoring_seconds: float


def neutral_group(prompt_id: str | None, document: str | None, query: str | None) -> str | None:
    """The group a sample is normalised in by the trainers: its prompt (``_neutral``)."""
    if prompt_id:
        return f"prompt:{prompt_id}"
    if document and query:
        return f"doc:{document}:{hashlib.sha256(query.encode('utf-8')).hexdigest()[:16]}"
    return None


class RewardService:
    """Resolves items to documents, groups them by (document, question), scores each group
    with one ``LongReward`` call, and turns answers into masked rewards.

    ``open()`` takes the run directory (shared lock, store as the judge's call cache,
    registered prompts, judged rewards) and registers the prompts file; ``aclose()``
    releases it. Not thread-safe: use it from one event loop (the server's, or the
    adapters' background loop)."""

    def __init__(self, options: ServeOptions | None = None, *,
                 scorer: LongReward | None = None) -> None:
        self.options = options or ServeOptions()
        score_opts = self.options.score
        self.scorer = scorer or LongReward(build_client(score_opts), options=score_opts,
                                           max_cached_documents=self.options.cached_documents)
        self.stats = ServiceStats()
        self.store: RunStore | None = None
        self.neutral: NeutralRewards | None = None
        self._lock: ServiceLock | None = None
        #: scoring tasks in flight, by neutral group: a failed sample waits for its siblings
        self._in_flight: dict[str, set[asyncio.Task[Any]]] = {}
        self.opened = False
        #: rejected rows of the prompts file (reported by the CLI)
        self.prompt_file_errors: list[Any] = []

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Take the run directory (shared with other reward services, not with stages) and
        register the prompts file. Idempotent."""
        if self.opened:
            return
        run_dir = self.options.run_dir
        lock = None
        if run_dir is not None:
            lock = ServiceLock(run_dir)
            lock.acquire()  # a stage writing outputs there stops us (and we it)
        try:
            store = RunStore(run_dir if run_dir is not None else MEMORY)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        self.store, self._lock = store, lock
        if run_dir is not None:
            store.claims = True  # other processes may be making the same judge calls
            if self.scorer.client.cache is None:
                self.scorer.client.cache = store
        neutral = self.options.neutral
        self.neutral = NeutralRewards(store, window=neutral.window, prior=neutral.prior)
        self.opened = True
        if self.options.prompts is not None:
            self.register_file(self.options.prompts)

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

    def _store(self) -> RunStore:
        self.open()
        assert self.store is not None
        return self.store

    # ------------------------------------------------------------------ documents
    #
    # Registrations live in the store only, so a prompt registered by one process (a POST
    # to another server, another worker's prompts file) is known to every process sharing
    # the run directory at once.

    def _registered(self) -> dict[str, Any]:
        return self._store().meta_with_prefix(PROMPT_META_PREFIX)

    @property
    def n_prompts(self) -> int:
        return len(self._registered())

    @property
    def n_documents(self) -> int:
        return len({v.get("document") for v in self._registered().values()
                    if isinstance(v, dict)})

    def lookup(self, prompt_id: str) -> RegisteredPrompt | None:
        entry = self._store().get_meta(PROMPT_META_PREFIX + prompt_id)
        if not isinstance(entry, dict) or not entry.get("document"):
            return None
        return RegisteredPrompt(prompt_id, entry["document"], entry.get("query"))

    def document_text(self, key: str) -> str | None:
        return self._store().get_document(key)

    def register(self, prompt_id: str, context: str, query: str | None = None, *,
                 replace: bool = False) -> Registration:
        """Register (or re-register) a document under ``prompt_id``, with the question its
        answers respond to when known. Registering the same content again is a no-op; other
        content under a known id is a conflict unless ``replace``: a trainer's labels would
        otherwise silently point at a different document."""
        store = self._store()
        key = document_key(context)
        query = query if query and query.strip() else None
        old = self.lookup(prompt_id)
        if old is not None and (old.document, old.query) == (key, query):
            return Registration(prompt_id, "unchanged", key)
        if old is not None and not replace:
            return Registration(prompt_id, "conflict", old.document,
                                f"prompt id {prompt_id!r} is registered with another document or "
                                "question; give it a new id, or register with replace=true")
        store.put_document(key, context)
        # the question is user data: stored exactly, not scrubbed like settings
        store.set_meta(PROMPT_META_PREFIX + prompt_id, {"document": key, "query": query},
                       scrub=False)
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

    # ------------------------------------------------------------------ scoring

    def _resolve(self, item: ScoreItem) -> tuple[str, str, str] | str:
        """(document key, context, query) for an item, or why there is none."""
        if item.error:
            return item.error
        if not item.response.strip():
            return "empty response: there is no answer to judge"
        context, query = item.context, item.query
        if item.prompt_id is not None and context is None:
            reg = self.lookup(item.prompt_id)
            if reg is None:
                return (f"unknown prompt id {item.prompt_id!r}: register its document first "
                        "(serve --prompts FILE, or POST /documents)")
            query = query or reg.query
            if not query:
                return (f"prompt {item.prompt_id!r} was registered without a question and the "
                        "item gives none; register it with its query, or send query")
            text = self.document_text(reg.document)
            if text is None:  # a store edited by hand
                return (f"prompt {item.prompt_id!r} names a document the run store does not "
                        "hold; register it again")
            return reg.document, text, query
        if context is None:
            return "no document: give context, or the prompt_id of a registered document"
        if not context.strip():
            return "empty document (context)"
        if not query or not query.strip():
            return "no question: give query (or register the prompt with its query)"
        return document_key(context), context, query

    async def listwise(self, responses: list[str], *, prompt_id: str | None = None,
                       context: str | None = None, query: str | None = None,
                       ids: list[str] | None = None, group_size: int | None = None,
                       timeout: float | None = None) -> dict[str, Any]:
        """The best and the worst of one prompt's ``responses`` by listwise selection
        (``preference.listwise``; the judge, its call cache and the registered documents are
        the service's). The document and question resolve as for a scored item. The reply
        names both by index and id, or says why there is none (``skip``, ``reason``:
        "invalid" for a request that cannot be judged, "deadline" when time ran out)."""
        from ..preference.listwise import ListwiseOptions, select_listwise

        self.open()
        ids = ids if ids is not None else [str(i) for i in range(len(responses))]
        problem = None
        if len(ids) != len(responses):
            problem = f"{len(ids)} ids for {len(responses)} responses"
        elif any(not r.strip() for r in responses):
            problem = "an empty response: there is no answer to judge"
        resolved = problem or self._resolve(ScoreItem(responses[0], prompt_id=prompt_id,
                                                      context=context, query=query))
        if isinstance(resolved, str):
            return {"best": None, "worst": None, "skip": "invalid", "reason": resolved}
        _key, text, question = resolved
        options = ListwiseOptions() if group_size is None else ListwiseOptions(
            group_size=group_size)
        cap = self.options.request_timeout
        try:
            sel = await asyncio.wait_for(
                select_listwise(self.scorer.settings, context=text, query=question,
                                answers=responses, options=options),
                cap if timeout is None else min(timeout, cap))
        except asyncio.TimeoutError:
            return {"best": None, "worst": None, "skip": "deadline",
                    "reason": "the listwise verdict did not come within the deadline"}
        agreed, asked = sel.position_consistency
        return {"best": sel.chosen, "worst": sel.rejected,
                "best_id": None if sel.chosen is None else ids[sel.chosen],
                "worst_id": None if sel.rejected is None else ids[sel.rejected],
                "skip": sel.skip, "reason": sel.reason, "orders_agreed": agreed,
                "orders_asked": asked, "usage": sel.usage}

    async def score(self, items: list[ScoreItem], *, timeout: float | None = None,
                    fill: Fill = "null") -> ScoreOutcome:
        """Score ``items``; results in the same order. Items of the same (document,
        question) are scored as one prompt, so they share its per-document work. Items
        still unscored after ``timeout`` (default and cap: ``request_timeout``) come back
        unscored with the deadline as the reason. ``fill`` says what an item that cannot be
        scored receives (module doc)."""
        self.open()
        cap = self.options.request_timeout
        timeout = cap if timeout is None else min(timeout, cap)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        results: list[ItemResult | None] = [None] * len(items)
        groups_of: list[str | None] = [None] * len(items)
        ids = [it.id if it.id is not None else str(i) for i, it in enumerate(items)]
        records: dict[tuple[str, str], tuple[PromptRecord, list[int]]] = {}
        for i, item in enumerate(items):
            resolved = self._resolve(item)
            if isinstance(resolved, str):
                groups_of[i] = neutral_group(item.prompt_id, None, None)
                results[i] = ItemResult(ids[i], "error", None, 0, resolved,
                                        prompt_id=item.prompt_id, prompt_seen=item.prompt_seen)
                continue
            doc, context, query = resolved
            groups_of[i] = neutral_group(item.prompt_id, doc, query)
            key = (doc, query)
            if key not in records:
                label = item.prompt_id or f"inline:{key[0][:12]}"
                records[key] = (PromptRecord(label, context, query, [], label=label), [])
            record, members = records[key]
            # Candidate ids are the item's position: client ids need not be unique.
            record.candidates.append(Candidate(str(i), item.response))
            members.append(i)

        t0 = time.perf_counter()
        tasks: dict[asyncio.Task[list[ScoredAnswer]], tuple[PromptRecord, list[int]]] = {}
        for rec, members in records.values():
            judged = {i: groups_of[i] for i in members}
            task = asyncio.ensure_future(self._score_record(rec, judged))
            tasks[task] = (rec, members)
            for g in {g for g in judged.values() if g is not None}:
                self._in_flight.setdefault(g, set()).add(task)
                task.add_done_callback(lambda t, g=g: self._forget(g, t))
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
                reason = f"deadline of {timeout:g}s exceeded before the judge finished" + (
                    " (judge calls that did finish are in the run store: a retry costs less)"
                    if self.options.run_dir is not None else "")
                for i in members:
                    results[i] = ItemResult(ids[i], "unscored", None, 0, reason,
                                            prompt_id=items[i].prompt_id,
                                            document=rec.document_key,
                                            prompt_seen=items[i].prompt_seen)
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
                                            document=rec.document_key,
                                            prompt_seen=items[i].prompt_seen)
                continue
            for ans in task.result():
                i = int(ans.id)
                results[i] = self._from_answer(ids[i], items[i], ans)

        final = [r for r in results if r is not None]
        assert len(final) == len(items)
        assert self.neutral is not None
        for r, g in zip(final, groups_of, strict=True):
            if r.reward is None and g is not None:
                self.neutral.observe(g, None)  # seen, not judged (judged ones: _score_record)
        await self._fill(final, groups_of, fill, deadline - loop.time())
        self._account(final)
        return ScoreOutcome(final, scoring_seconds)

    async def _score_record(self, record: PromptRecord, groups: dict[int, str | None]
                            ) -> list[ScoredAnswer]:
        """Score one prompt's answers and keep their judged rewards, before the task ends:
        a failed sibling waiting for this task then finds them (``_fill``)."""
        answers = await self.scorer.score_prompt(record)
        assert self.neutral is not None
        for ans in answers:
            group = groups.get(int(ans.id))
            if ans.reward is not None and group is not None:
                self.neutral.observe(group, ans.reward)
        return answers

    def _forget(self, group: str, task: asyncio.Task[Any]) -> None:
        tasks = self._in_flight.get(group)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._in_flight[group]

    def _from_answer(self, item_id: str, item: ScoreItem, ans: ScoredAnswer) -> ItemResult:
        scores = {n: r.score for n, r in ans.results.items()}
        unscored = {n: r.unscored_reason or "unscored" for n, r in ans.results.items()
                    if r.score is None}
        flags = [f.to_dict() for f in ans.flags]
        copies = copy_reasks({n: r.details for n, r in ans.results.items()})
        if ans.reward is not None:
            return ItemResult(item_id, "scored", ans.reward, 1, None, scores, unscored,
                              ans.dimensions, prompt_id=item.prompt_id, document=ans.document,
                              prompt_seen=item.prompt_seen, flags=flags, floor=ans.floor,
                              dropped_statements=ans.dropped_statements, copy_reasks=copies)
        # No reward: a dimension the judge left unscored (one the answer made unreadable
        # scores its minimum and has a reward), so mask 0, never a mean over fewer dimensions.
        reasons = list(dict.fromkeys(unscored.values()))
        head = ("all dimensions unscored: " if len(unscored) == len(ans.results)
                else f"no reward: {', '.join(unscored)} unscored by the judge: ")
        reason = head + (reasons[0] if len(reasons) == 1 else
                         "; ".join(f"{n}: {r}" for n, r in unscored.items()))
        return ItemResult(item_id, "unscored", None, 0, reason, scores, unscored, [],
                          prompt_id=item.prompt_id, document=ans.document,
                          prompt_seen=item.prompt_seen, flags=flags,
                          dropped_statements=ans.dropped_statements, copy_reasks=copies)

    async def _fill(self, results: list[ItemResult], groups: list[str | None], fill: Fill,
                    time_left: float) -> None:
        """Give the items without a reward their stand-in (module doc), logged once per
        request."""
        missing = [(r, g) for r, g in zip(results, groups, strict=True) if r.reward is None]
        if not missing:
            return
        fixed = self.options.fallback_reward
        if fixed is not None:
            for r, _ in missing:
                r.reward, r.fallback, r.fallback_basis = fixed, True, "fixed"
            self.stats.fallback += len(missing)
            logger.warning("%d of %d item(s) got the fallback reward %g (mask 0); first: "
                           "item %s: %s", len(missing), len(results), fixed, missing[0][0].id,
                           missing[0][0].reason)
            return
        if fill == "null":
            logger.info("%d of %d item(s) have no reward (mask 0); first: item %s: %s",
                        len(missing), len(results), missing[0][0].id, missing[0][0].reason)
            return
        assert self.neutral is not None
        await self._await_groups({g for _, g in missing if g is not None}, time_left)
        values: dict[str | None, Neutral] = {}
        for r, g in missing:
            if g not in values:
                values[g] = self.neutral.value(g)
            n = values[g]
            r.reward, r.fallback, r.fallback_basis = n.value, True, n.basis
            self.stats.neutral[n.basis] += 1
        first, g = missing[0]
        logger.warning("%d of %d item(s) got the neutral reward (mask 0); first: item %s: %s; "
                       "it got the %s", len(missing), len(results), first.id, first.reason,
                       values[g].describe())

    async def _await_groups(self, groups: set[str], time_left: float) -> None:
        """Wait, at most ``time_left`` seconds, for what makes these groups' means exact
        (``_neutral``): their samples this process is still scoring (other requests:
        OpenRLHF sends each sample alone) and, with ``neutral.group_size``, the samples that
        have not arrived yet, at this process or another sharing the run store."""
        assert self.neutral is not None
        neutral = self.options.neutral
        loop = asyncio.get_running_loop()
        until = loop.time() + time_left
        # siblings being judged are waited for until the deadline; those not arrived yet only
        # for max_wait (a group may be smaller than group_size: an evaluation)
        arrivals_until = min(until, loop.time() + neutral.max_wait)
        while groups and loop.time() < until:
            siblings = {t for g in groups for t in self._in_flight.get(g, ())}
            if siblings:
                await asyncio.wait(siblings, timeout=until - loop.time())
            if neutral.group_size is None or loop.time() >= arrivals_until:
                return
            groups = {g for g in groups if self.neutral.seen(g) < neutral.group_size}
            if groups and not siblings:
                await asyncio.sleep(max(0.0, min(0.2, arrivals_until - loop.time())))

    def _account(self, results: list[ItemResult]) -> None:
        for r in results:
            self.stats.items[r.status] += 1
            for name in r.unscored:
                self.stats.unscored_dimensions[name] += 1
            if r.mask and r.prompt_seen is not None and r.prompt_seen < 1.0:
                if not self.stats.truncated_prompts:  # once: the fix is the same for all
                    logger.warning(
                        "the trainer cut prompt %s before generating: the policy saw %.0f%% of "
                        "it, and its answer is judged against the whole document (counted in "
                        "longreward_truncated_prompts_total; each item's prompt_seen says how "
                        "much). Fix: raise OpenRLHF's --data.max_len (0.9.1+, or set "
                        "--rollout.max_new_tokens) or --prompt_max_len (0.9.0)",
                        r.prompt_id, 100 * r.prompt_seen)
                self.stats.truncated_prompts += 1
            self.stats.floored_items += r.floor is not None
            self.stats.dropped_statements += r.dropped_statements
            if r.flags:
                self.stats.flagged_items += 1
                self.stats.flags_by_kind.update(flag_counts(r.flags))
