"""Baselines that ``eval agreement`` puts beside the reward, on the same pairs.

- ``pairwise``: a judge sees the document, the question and both answers and names the better
  one. It is asked twice with the answers swapped; there is a verdict only when both orders
  agree, otherwise the pair is a tie. This is the "pairwise comparison" baseline of the
  LongReward paper (§4.3, 57.1% agreement there), with the swap that removes position bias.
- ``holistic``: one judge call per answer, document included, a single 0–10 quality score
  (what a user gets by asking an LLM "rate this answer" instead of the four dimensions).
- ``length``: the longer answer (in characters) wins; no calls. Judges and people both favour
  longer answers, so any method should beat it to be worth its cost.
- ``consensus``: the answer most similar to the prompt's other answers wins (minimum-Bayes-risk
  selection, with unigram-F1 overlap as the similarity); no calls. With only two answers to a
  prompt both are equally similar to each other, so it ties: it needs several answers per
  prompt (pointwise data, or extra samples given as a pool).

Judge calls go through the one client path (``ask_judge`` / ``judge_score``: JSON reply model
with a tagged-text fallback); the prompts are ``prompts/pairwise.*.md`` and
``prompts/holistic.*.md``, ours, in English and Chinese.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..reward.dimensions import (
    JudgeSettings,
    ask_judge,
    judge_score,
    load_prompt,
    parse_choice,
    parse_score,
    usage_dict,
)
from ._run import PROMPTS_PACKAGE
from ._stats import Verdict, verdict_from_scores

BASELINES: tuple[str, ...] = ("pairwise", "holistic", "length", "consensus")
#: baselines that call the judge (the others are free)
JUDGED: frozenset[str] = frozenset({"pairwise", "holistic"})
#: judge tags, for the accounting
TAGS = {"pairwise": "baseline.pairwise", "holistic": "baseline.holistic"}


class PairwiseReply(BaseModel):
    analysis: str
    winner: Literal["A", "B", "tie"]


class HolisticReply(BaseModel):
    analysis: str
    score: float = Field(ge=0, le=10)


_WINNER_WORDS = {"a": "A", "b": "B", "tie": "tie", "平局": "tie", "平手": "tie"}


def parse_pairwise_text(reply: str, prompt_text: str) -> PairwiseReply:
    winner = parse_choice(reply, prompt_text, _WINNER_WORDS)
    return PairwiseReply(analysis=reply.strip(), winner=winner)  # type: ignore[arg-type]


def parse_holistic_text(reply: str, prompt_text: str) -> HolisticReply:
    return HolisticReply(analysis=reply.strip(), score=parse_score(reply, prompt_text))


async def pairwise_verdict(settings: JudgeSettings, *, language: str, context: str, query: str,
                           answer_a: str, answer_b: str) -> dict[str, Any]:
    """Ask with (a, b) and with (b, a). ``verdict`` is "a"/"b" when both orders name the same
    answer, "tie" when they differ or both say tie, None when a call failed."""
    prompt = load_prompt("pairwise", language, PROMPTS_PACKAGE)

    async def ask(first: str, second: str) -> Any:
        return await ask_judge(settings, prompt, {"document": context, "query": query,
                                                  "answer_a": first, "answer_b": second},
                               PairwiseReply, parse_pairwise_text, tag=TAGS["pairwise"])

    straight, swapped = await asyncio.gather(ask(answer_a, answer_b), ask(answer_b, answer_a))
    usage = [usage_dict(x.usage, x.calls) for x in (straight, swapped)]
    failed = [x.error for x in (straight, swapped) if x.value is None]
    if failed:
        return {"verdict": None, "error": failed[0], "usage": usage}
    # In the swapped call "A" is answer b.
    first = {"A": "a", "B": "b", "tie": "tie"}[straight.value.winner]  # type: ignore[union-attr]
    second = {"A": "b", "B": "a", "tie": "tie"}[swapped.value.winner]  # type: ignore[union-attr]
    verdict: Verdict = first if first == second else "tie"
    return {"verdict": verdict, "orders": [first, second], "usage": usage}


async def holistic_score(settings: JudgeSettings, *, language: str, context: str, query: str,
                         response: str) -> Any:
    """One 0–10 score for the answer, document included (a ``DimensionResult`` named
    "holistic": unscored with the reason when the judge fails)."""
    return await judge_score(settings, "holistic", load_prompt("holistic", language,
                                                               PROMPTS_PACKAGE),
                             {"document": context, "query": query, "response": response},
                             HolisticReply, parse_holistic_text, tag=TAGS["holistic"])


def length_verdict(answer_a: str, answer_b: str) -> Verdict:
    """The longer answer (in characters, surrounding white space ignored) wins."""
    return verdict_from_scores(float(len(answer_a.strip())), float(len(answer_b.strip())))


_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


def _bag(text: str) -> Counter[str]:
    # Chinese has no spaces: each character is a token, as ROUGE does for Chinese.
    return Counter(_WORD.findall(text.lower()))


def unigram_f1(a: Counter[str], b: Counter[str]) -> float:
    overlap = sum((a & b).values())
    if not overlap:
        return 0.0
    p, r = overlap / sum(b.values()), overlap / sum(a.values())
    return 2 * p * r / (p + r)


def consensus_scores(answers: list[str], pool: list[str] | None = None) -> list[float]:
    """Each answer's mean similarity to the other answers of its prompt (and to ``pool``,
    extra samples for the same prompt). An answer is not compared with itself; an identical
    copy elsewhere in the list is compared, as MBR does with duplicate samples."""
    bags = [_bag(a) for a in answers]
    extra = [_bag(p) for p in (pool or [])]
    out = []
    for i, bag in enumerate(bags):
        others = [b for j, b in enumerate(bags) if j != i] + extra
        out.append(sum(unigram_f1(bag, o) for o in others) / len(others) if others else 0.0)
    return out
