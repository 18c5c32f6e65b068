"""Listwise selection: the judge sees all of a prompt's answers at once and names the best and
the worst, instead of scoring each answer on its own.

Why: building a DPO pair only needs the best and the worst answer of a prompt, and a
generative judge is much better at *choosing* among answers than at giving each one a
calibrated number (Long-form RewardBench, 2026: 73.6% when selecting against 40.8% when
scoring pointwise). Pointwise LongReward asks ~10 calls per answer; listwise asks 2 per
group of answers. What it gives up: there is no reward per answer (nothing for RL, no
margin, no per-dimension scores), and the judge must hold every answer and the document in
one context.

How a prompt's answers are judged (``select_listwise``):

- **Fenced and labelled.** Each answer is candidate text, fenced as data with a boundary the
  text cannot forge (``judge.fence``) and labelled with a capital letter; the request ends
  with its verdict code (``request_nonce``), and the verdict is read through the one judge
  path, ``ModelClient.ask``: a JSON reply whose ``best`` and ``worst`` are constrained to the
  labels shown (``reply_model``), or a text reply ending ``CODE [[X/Y]]`` read by
  ``judge._verdict.locate_verdict`` (the same nonce / fallback / ambiguity rules as every
  dimension).
- **Two orders.** A group is shown in a shuffled order (seeded by the answers themselves, so
  a rerun is the same request and hits the call cache) and in the reverse of that order: the
  first answer of one is the last of the other, and every answer gets another letter. A
  best (worst) counts only when both orders name the same answer, as the pairwise baseline
  counts a winner only when both orders agree; otherwise that side is undecided
  ("orders_disagree"), which is position bias measured, not hidden.
- **Tournaments of k.** A judge reads a group of at most ``group_size`` answers. More answers
  are split into balanced groups of at most k; each group's agreed best goes on to a
  winners' round and its agreed worst to a losers' round, until one answer is left on each
  side. Chosen comes only from winners and rejected only from losers, so they are never the
  same answer. A group whose orders disagree on a side sends nobody to that side's round.
- **Long documents.** With ``max_prompt_tokens`` set, a request that would not fit shows
  *evidence* instead of the whole document: the document is cut into
  ``evidence_chunk_tokens`` chunks, indexed once per prompt with BM25, searched with the
  question and with each answer of the group (the evidence a judge needs is what the answers
  claim and what the question asks), and the best-ranked chunks that fit the budget are
  shown in document order, each labelled with its position ("25%–50%"), as the paper labels
  completeness findings. Which view each group saw is recorded.
- **Failures have a reason.** A judge failure (after ``ask``'s bounded re-asks) leaves the
  group unjudged and the prompt without a pair ("unjudged", with the judge's reason and
  cause); never a guess. When an answer's own text made the verdict unreadable (the cause is
  "answer": the reply only copied a verdict the answer wrote, or the judge obeyed text
  addressed to it), the answers of the group that hold such text (``reward.injection``
  flags) lose: the first is the group's worst, and the others are judged again without them,
  the listwise form of "an answer-caused failure scores the minimum".

The judge is asked one overall question (faithfulness, completeness, helpfulness, logic, in
that order of weight, in the prompt). Per-dimension listwise rounds would cost one more pair
of calls per dimension and group, and the pair is built from one overall choice anyway.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from ..judge import (
    Cause,
    GenerateConfig,
    ModelClient,
    PromptText,
    fence,
    fold,
    locate_verdict,
    neutralise,
)
from ..retrieval import BM25Retriever
from ..reward.dimensions import JudgeSettings, load_prompt, request_nonce, usage_dict
from ..reward.injection import find_flags, steers_judge
from ..text import chunk_text, detect_language, get_tokenizer, position_label

__all__ = [
    "LISTWISE_SKIPS",
    "LISTWISE_TAG",
    "Ballot",
    "GroupVerdict",
    "ListwiseOptions",
    "ListwiseSelection",
    "judge_settings",
    "reply_model",
    "select_listwise",
]

#: the judge tag of listwise calls (accounting, costs)
LISTWISE_TAG = "listwise"
#: where the prompts live (``prompts/listwise.{en,zh}.md`` beside this module)
PROMPTS_PACKAGE = "longreward.preference"
#: why a prompt yields no listwise pair
LISTWISE_SKIPS: tuple[str, ...] = ("too_few_candidates", "unjudged", "orders_disagree",
                                   "identical_answers")
LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class ListwiseOptions(BaseModel):
    """How listwise selection asks the judge (``pairs --selection listwise``, the ``pairs:``
    section of a run config, ``eval agreement --listwise``, serve's ``/listwise`` route)."""

    model_config = ConfigDict(extra="forbid")

    #: at least 3: balanced groups of at most k then never leave an answer alone in a group
    #: (k = 2 with an odd count would; a group of one cannot name a best and a different
    #: worst). Two answers in all are still one group of 2.
    group_size: int = Field(4, ge=3, le=len(LABELS),
                            description="answers one judge call compares (tournaments above)")
    max_prompt_tokens: int | None = Field(
        None, ge=1024, description="a request longer than this shows evidence excerpts "
        "instead of the whole document (None: always the whole document)")
    evidence_chunk_tokens: int = Field(256, ge=32, description="size of an evidence excerpt")
    language: Literal["auto", "en", "zh"] = "auto"
    seed: int = Field(0, description="shuffles the order the answers are shown in")


class _Reply(BaseModel):
    analysis: str
    best: str
    worst: str

    @model_validator(mode="after")
    def _different(self) -> _Reply:
        if self.best == self.worst:
            raise ValueError("best and worst must be different answers")
        return self


@cache
def reply_model(n: int) -> type[_Reply]:
    """The reply model for a group of ``n`` answers: ``best`` and ``worst`` are letters of
    the answers shown (an enum in the JSON schema, so a grammar-constrained endpoint cannot
    name an answer that is not there), and they must differ."""
    letters = Literal[tuple(LABELS[:n])]  # type: ignore[valid-type]
    return create_model("ListwiseReply", __base__=_Reply,
                        best=(letters, Field(description="letter of the best answer")),
                        worst=(letters, Field(description="letter of the worst answer")))


_PAIR = re.compile(r"^\s*([A-Za-z])\s*[/／]\s*([A-Za-z])\s*$")


def _text_parser(n: int, shown: PromptText):
    model = reply_model(n)

    def convert(x: str) -> tuple[str, str] | None:
        m = _PAIR.match(x)
        if m is None:
            return None
        best, worst = m.group(1).upper(), m.group(2).upper()
        ok = best != worst and best in LABELS[:n] and worst in LABELS[:n]
        return (best, worst) if ok else None

    def parse(reply: str) -> _Reply:
        best, worst = locate_verdict(reply, shown, convert, f"[[X/Y]] with X ≠ Y among "
                                     f"{LABELS[0]}–{LABELS[n - 1]}").value
        return model(analysis=reply.strip(), best=best, worst=worst)

    return parse


@dataclass
class Ballot:
    """One judge call: the answers in the order shown (indices into the prompt's answers),
    and the best and worst it named (indices), or why it named none."""

    order: list[int]
    best: int | None = None
    worst: int | None = None
    error: str | None = None
    cause: Cause | None = None
    path: str | None = None
    usage: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"order": self.order, "best": self.best, "worst": self.worst,
                "error": self.error, "cause": self.cause, "path": self.path,
                "usage": self.usage}


@dataclass
class GroupVerdict:
    """A group asked in two orders: its agreed best and worst (None where the orders
    disagree or a call failed), the view of the document it saw, and both ballots."""

    members: list[int]
    ballots: list[Ballot]
    view: str
    best: int | None = None
    worst: int | None = None
    #: answers set aside because their text made the verdict unreadable (the first is the
    #: worst), and why; the ballots are then those of the others, judged without them
    excluded: list[int] = field(default_factory=list)
    excluded_reason: str | None = None

    @property
    def failed(self) -> Ballot | None:
        return next((b for b in self.ballots if b.error is not None), None)

    def to_dict(self) -> dict[str, Any]:
        return {"members": self.members, "best": self.best, "worst": self.worst,
                "view": self.view, "excluded": self.excluded,
                "excluded_reason": self.excluded_reason,
                "ballots": [b.to_dict() for b in self.ballots]}


@dataclass
class ListwiseSelection:
    """The outcome for one prompt: ``chosen``/``rejected`` (indices into its answers), or
    ``skip`` (one of ``LISTWISE_SKIPS``) with ``reason``; every round of every group, and
    what the calls cost."""

    chosen: int | None
    rejected: int | None
    skip: str | None = None
    reason: str | None = None
    cause: Cause | None = None
    rounds: list[list[GroupVerdict]] = field(default_factory=list)
    language: str = "en"

    @property
    def usage(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for groups in self.rounds:
            for g in groups:
                for b in g.ballots:
                    for k, v in b.usage.items():
                        total[k] = total.get(k, 0) + v
        return total

    @property
    def position_consistency(self) -> tuple[int, int]:
        """(sides on which both orders agreed, sides both orders answered), over groups."""
        agreed = asked = 0
        for groups in self.rounds:
            for g in groups:
                if g.failed is not None or not g.ballots:
                    continue
                if g.excluded:  # the worst was the flagged answer, not the orders' choice
                    asked += 1
                    agreed += g.best is not None
                else:
                    asked += 2
                    agreed += (g.best is not None) + (g.worst is not None)
        return agreed, asked

    def verdict(self, a: int, b: int) -> Literal["a", "b", "tie"] | None:
        """Which of answers ``a`` and ``b`` the selection prefers: the chosen one beats every
        other, the rejected one loses to every other, two others tie (so do all when the
        orders disagreed, as the pairwise baseline counts a split verdict); None when the
        judge gave no verdict."""
        if self.skip in ("unjudged", "too_few_candidates"):
            return None
        return _compare(_rank(a, self.chosen, self.rejected),
                        _rank(b, self.chosen, self.rejected))

    def orders(self, a: int, b: int) -> list[str] | None:
        """The verdict on ``a`` against ``b`` of each order of the first-round group that
        showed both, the order that showed ``a`` before ``b`` first (as the pairwise
        baseline's straight and swapped calls, for the position-bias diagnostic); None when
        no group showed both or a call failed."""
        for g in self.rounds[0] if self.rounds else []:
            shown = g.ballots and all(a in x.order and b in x.order for x in g.ballots)
            if shown and g.failed is None:  # (an excluded answer is in no ballot)
                ballots = sorted(g.ballots, key=lambda x: x.order.index(a) > x.order.index(b))
                return [_compare(_rank(a, x.best, x.worst), _rank(b, x.best, x.worst))
                        for x in ballots]
        return None

    def to_dict(self) -> dict[str, Any]:
        agreed, asked = self.position_consistency
        return {"chosen": self.chosen, "rejected": self.rejected, "skip": self.skip,
                "reason": self.reason, "cause": self.cause, "language": self.language,
                "usage": self.usage, "orders_agreed": agreed, "orders_asked": asked,
                "rounds": [[g.to_dict() for g in r] for r in self.rounds]}


def _rank(i: int, best: int | None, worst: int | None) -> int:
    return 1 if i == best else -1 if i == worst else 0


def _compare(x: int, y: int) -> Literal["a", "b", "tie"]:
    return "a" if x > y else "b" if y > x else "tie"


def _split(members: list[int], k: int) -> list[list[int]]:
    """Balanced groups of at most ``k``: sizes differ by at most one, so with k ≥ 3 and more
    than k answers every group has at least two."""
    groups = -(-len(members) // k)
    size, extra = divmod(len(members), groups)
    out, at = [], 0
    for i in range(groups):
        step = size + (1 if i < extra else 0)
        out.append(members[at:at + step])
        at += step
    return out


class _Evidence:
    """A prompt's document as shown to the judge: whole, or the excerpts a group needs."""

    def __init__(self, document: str, query: str, options: ListwiseOptions,
                 language: str) -> None:
        self.document, self.query, self.options = document, query, options
        self.tokenizer = get_tokenizer()
        self.language = language
        self._chunks: list[Any] | None = None
        self._index: Any = None
        self._lock = asyncio.Lock()

    def tokens(self, text: str) -> int:
        return self.tokenizer.count(text)

    async def view(self, answers: list[str], fixed_tokens: int) -> tuple[str, str]:
        """(text, view name): the whole document when the request fits ``max_prompt_tokens``
        (or there is no limit), else the best evidence excerpts that fit."""
        budget = self.options.max_prompt_tokens
        if budget is None:
            return self.document, "whole"
        room = budget - fixed_tokens - sum(self.tokens(a) for a in answers)
        if self.tokens(self.document) <= room:
            return self.document, "whole"
        room = max(room, self.options.evidence_chunk_tokens)  # at least one excerpt
        chunks, hits = await self._search([self.query, *answers])
        score: dict[int, float] = {}
        for ranked in hits:
            for rank, hit in enumerate(ranked):
                score[hit.chunk] = score.get(hit.chunk, 0.0) + 1.0 / (rank + 1)
        chosen: list[int] = []
        used = 0
        for i in sorted(score, key=lambda c: (-score[c], c)):
            cost = chunks[i].n_tokens + 8  # its position label
            if used + cost > room:
                continue
            chosen.append(i)
            used += cost
        total = len(self.document)
        text = "\n\n".join(f"[{position_label(chunks[i], total)}]\n{chunks[i].text}"
                           for i in sorted(chosen))
        return text, f"evidence ({len(chosen)} of {len(chunks)} excerpts)"

    async def _search(self, queries: list[str]) -> tuple[list[Any], list[list[Any]]]:
        async with self._lock:  # the index is built once per prompt, by the first group
            if self._chunks is None:
                self._chunks = chunk_text(self.document, tokenizer=self.tokenizer,
                                          chunk_tokens=self.options.evidence_chunk_tokens)
                self._index = await BM25Retriever(self.language).build(
                    [c.text for c in self._chunks])
        k = min(8, max(1, len(self._chunks)))
        return self._chunks, await self._index.search(queries, k)


class _Selector:
    def __init__(self, settings: JudgeSettings, document: str, query: str,
                 answers: Sequence[str], options: ListwiseOptions, language: str) -> None:
        self.settings, self.query, self.answers = settings, query, list(answers)
        self.options, self.language = options, language
        self.prompt = load_prompt("listwise", language, PROMPTS_PACKAGE)
        self.evidence = _Evidence(document, query, options, language)
        self.fixed_tokens = self.evidence.tokens(self.prompt.static_text() + query) + 64
        self.rounds: list[list[GroupVerdict]] = []

    def _order(self, members: list[int]) -> list[int]:
        # Seeded by the answers themselves and the seed: the same group is shown in the same
        # order on a rerun (same requests, cache hits), yet no position is favoured.
        key = hashlib.sha256("\x00".join([str(self.options.seed), self.query,
                                          *(self.answers[i] for i in members)]).encode())
        order = list(members)
        random.Random(key.digest()).shuffle(order)
        return order

    async def _ask(self, order: list[int], document: str) -> Ballot:
        n = len(order)
        labels = LABELS[:n]
        texts = [self.answers[i] for i in order]
        block = "\n\n".join(f"Answer {x}:\n{fence(f'answer_{x.lower()}', t)}"
                            for x, t in zip(labels, texts, strict=True))
        variables = {"document": document, "query": self.query, "answers": block,
                     "labels": ", ".join(labels)}
        nonce = request_nonce(self.settings.client, self.prompt, variables)
        assert nonce is not None  # the prompt carries $nonce
        variables["nonce"] = nonce
        shown = PromptText(self.prompt.static_text(), [neutralise(t) for t in texts], nonce)
        asked = await self.settings.client.ask(
            lambda mode: self.prompt.messages(mode, **variables), reply_model(n),
            _text_parser(n, shown), tag=LISTWISE_TAG, config=self.settings.generate,
            attempts=self.settings.attempts, retry_temperature=self.settings.retry_temperature,
            nonce=nonce)
        ballot = Ballot(order=order, usage=usage_dict(asked.usage, asked.calls),
                        path=asked.path)
        if asked.value is None:
            ballot.error, ballot.cause = asked.error or "no reply", asked.cause or "judge"
            if ballot.cause == "judge" and asked.raw and any(steers_judge(t) for t in texts):
                # as for every dimension (``ask_judge``): a judge that wrote no verdict after
                # reading text addressed to it may well have obeyed it
                ballot.cause = "answer"
                ballot.error += ("; an answer holds text addressed to the judge (flagged), "
                                 "which it may have obeyed")
        else:
            ballot.best = order[labels.index(asked.value.best)]
            ballot.worst = order[labels.index(asked.value.worst)]
        return ballot

    async def group(self, members: list[int]) -> GroupVerdict:
        document, view = await self.evidence.view([self.answers[i] for i in members],
                                                  self.fixed_tokens)
        first = self._order(members)
        ballots = list(await asyncio.gather(self._ask(first, document),
                                            self._ask(first[::-1], document)))
        g = GroupVerdict(members=list(members), ballots=ballots, view=view)
        failed = g.failed
        if failed is None:
            a, b = ballots
            g.best = a.best if a.best == b.best else None
            g.worst = a.worst if a.worst == b.worst else None
        elif failed.cause == "answer":
            return await self._without_flagged(g, failed)
        return g

    async def _without_flagged(self, g: GroupVerdict, failed: Ballot) -> GroupVerdict:
        """An answer's text made the group's verdict unreadable. The answers holding
        verdict-shaped or judge-addressed text (``reward.injection``) are the ones that can
        have done it: they lose (the first is the group's worst), as an answer-caused failure
        scores a dimension's minimum, so no answer gains by breaking the verdict; the others
        are judged again without them. With no flagged answer the group stays unjudged."""
        flagged = [i for i in g.members if find_flags(self.answers[i])]
        rest = [i for i in g.members if i not in flagged]
        if not flagged or not rest:
            return g
        out = GroupVerdict(members=g.members, ballots=[], view=g.view, worst=flagged[0],
                           excluded=flagged, excluded_reason=failed.error)
        if len(rest) == 1:
            out.best = rest[0]
            return out
        inner = await self.group(rest)
        out.ballots, out.view, out.best = inner.ballots, inner.view, inner.best
        out.excluded += inner.excluded
        return out

    async def side(self, members: list[int], which: str) -> int | None:
        """The best (or worst) of ``members``: itself when alone, else the agreed choice of
        their round (in tournaments again when they are more than a group)."""
        if len(members) <= 1:
            return members[0] if members else None
        best, worst = await self.select(members)
        return best if which == "best" else worst

    async def select(self, members: list[int]) -> tuple[int | None, int | None]:
        groups = _split(members, self.options.group_size)
        verdicts = list(await asyncio.gather(*(self.group(m) for m in groups)))
        self.rounds.append(verdicts)
        failed = next((g.failed for g in verdicts if g.failed is not None), None)
        if failed is not None:
            raise _Unjudged(failed)
        if len(verdicts) == 1:
            return verdicts[0].best, verdicts[0].worst
        winners = [g.best for g in verdicts if g.best is not None]
        losers = [g.worst for g in verdicts if g.worst is not None]
        best, worst = await asyncio.gather(self.side(winners, "best"),
                                           self.side(losers, "worst"))
        return best, worst


class _Unjudged(Exception):
    def __init__(self, ballot: Ballot) -> None:
        self.ballot = ballot


def judge_settings(client: ModelClient, options: Any) -> JudgeSettings:
    """How listwise calls ask ``client``: the judge section (``JudgeOptions``) of ``options``
    (a ``ScoreOptions``), the same temperature, length and re-asks the dimensions use."""
    j = options.judge
    return JudgeSettings(client=client, generate=GenerateConfig(temperature=j.temperature,
                                                                max_tokens=j.max_tokens),
                         attempts=j.attempts, retry_temperature=j.retry_temperature)


async def select_listwise(settings: JudgeSettings, *, context: str, query: str,
                          answers: Sequence[str],
                          options: ListwiseOptions | None = None) -> ListwiseSelection:
    """Chosen and rejected among ``answers`` (one prompt's, sharing ``context`` and
    ``query``), by listwise judging in two orders and, above ``group_size`` answers,
    tournaments (see the module docstring). Never raises for a judge failure: the selection
    is then skipped as "unjudged" with the reason."""
    options = options or ListwiseOptions()
    language = (options.language if options.language != "auto"
                else detect_language(query + "\n" + context[:2000]))
    if len(answers) < 2:
        return ListwiseSelection(None, None, "too_few_candidates",
                                 f"{len(answers)} answer(s); listwise selection needs 2",
                                 language=language)
    sel = _Selector(settings, context, query, answers, options, language)
    try:
        best, worst = await sel.select(list(range(len(answers))))
    except _Unjudged as exc:
        return ListwiseSelection(None, None, "unjudged", exc.ballot.error,
                                 exc.ballot.cause, sel.rounds, language)
    out = ListwiseSelection(best, worst, rounds=sel.rounds, language=language)
    if best is None or worst is None:
        side = "best" if best is None else "worst"
        out.chosen = out.rejected = None
        out.skip, out.reason = "orders_disagree", (
            f"the two orders named different {side} answers (position bias); no pair")
    elif fold(answers[best]) == fold(answers[worst]):
        out.chosen = out.rejected = None
        out.skip, out.reason = "identical_answers", "the best and the worst answer are the same text"
    return out
