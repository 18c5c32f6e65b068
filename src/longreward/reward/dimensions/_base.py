"""What every dimension shares: its result type and the one way it asks the judge.

A dimension ends in one of four states (``DimensionResult``):
- scored: ``score`` set, ``cause`` None;
- at its minimum because of the answer (``cause="answer"``): the answer's own text made the
  judge's verdict unreadable, or made the judge refuse; ``score`` is the dimension's minimum
  (0) and ``reason`` says why. A policy that writes the verdict it expects, so that the
  judge's honest one can no longer be told from its copy, loses the dimension instead of
  dropping it from the reward;
- unscored because of the judge (``cause="judge"``: an outage, a reply with no verdict for
  reasons of the judge's own, the deadline) or of a bug (``"internal"``): ``score`` None,
  ``reason`` set; the reward is then null (mask 0), not a mean over fewer dimensions
  (``combine_reward``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, Field, create_model

from ...judge import (
    SCORE_VALUES,
    Cause,
    Expected,
    GenerateConfig,
    ModelClient,
    ReplyParseError,
    TokenLogprob,
    Usage,
    Verdicts,
    canonical,
    expected_value,
    field_span,
)
from ..injection import copy_check as copy_sources
from ..injection import steers_judge
from ._parse import score_span
from ._prompts import PromptTemplate, ReplyMode

#: the lowest score of every dimension (all four score 0–10): what an answer-caused failure gets
MINIMUM = 0.0


@dataclass
class DimensionResult:
    """A dimension is scored, at its minimum because of the answer, or unscored with a
    reason and a cause — never a silent default (see the module docstring)."""

    name: str
    score: float | None
    unscored_reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: None when scored by the judge; else why not ("answer", "judge", "internal")
    cause: Cause | None = None

    def __post_init__(self) -> None:
        if self.score is None and self.cause is None:
            self.cause = "judge"

    @classmethod
    def unscored(cls, name: str, reason: str, *, cause: Cause = "judge",
                 **details: Any) -> DimensionResult:
        """No score: the judge failed (or a bug, ``cause="internal"``). An answer-caused
        failure is ``at_minimum`` instead."""
        if cause == "answer":
            return cls.at_minimum(name, reason, **details)
        return cls(name=name, score=None, unscored_reason=reason, details=details, cause=cause)

    @classmethod
    def at_minimum(cls, name: str, reason: str, **details: Any) -> DimensionResult:
        """The dimension's minimum score, because the answer's text made its verdict
        unreadable (or made the judge refuse); ``reason`` says how."""
        return cls(name=name, score=MINIMUM, unscored_reason=None,
                   details={**details, "answer_caused": reason}, cause="answer")

    @property
    def reason(self) -> str | None:
        """Why the dimension has no judged score: the unscored reason, or why it was set to
        its minimum because of the answer."""
        if self.cause == "answer":
            return str(self.details.get("answer_caused") or "caused by the answer")
        return self.unscored_reason


@dataclass
class JudgeSettings:
    """How dimensions call the judge (shared by all four)."""

    client: ModelClient
    generate: GenerateConfig
    attempts: int = 5
    retry_temperature: float = 0.95
    #: "integer": a verdict is the value the judge wrote; "expected": the expected value over
    #: its token probabilities where the endpoint gives them (``generate.logprobs`` set),
    #: else the integer, recorded per verdict (``weigh``)
    verdicts: Verdicts = "integer"


@dataclass
class Answered:
    """One structured judge reply, or why there is none (and whose fault that is)."""

    value: BaseModel | None
    error: str | None
    raw: list[str]
    usage: Usage
    calls: int
    #: "nonce" or "fallback": how the verdict was found (None without a value)
    path: str | None = None
    #: "answer" or "judge" when there is no value
    cause: Cause | None = None
    #: replies set aside as copies of the answer and re-asked (``judge.copied_reply``)
    copied: int = 0
    #: the reply that parsed: its token log-probabilities, where its JSON verdict object is
    #: (None for text), and the prompt's fixed text its parser read it against
    tokens: list[TokenLogprob] | None = None
    span: tuple[int, int] | None = None
    shown: str = ""
    #: its call-cache key (where its log-probabilities are kept)
    key: str | None = None


def request_nonce(client: ModelClient, prompt: PromptTemplate,
                  variables: dict[str, str]) -> str | None:
    """The verdict code of the request ``prompt`` makes of ``variables`` (None when the
    prompt asks for none): derived from everything the request says, the answer included."""
    if not prompt.takes_nonce:
        return None
    return client.nonce(canonical([prompt.name, prompt.language, variables]))


async def ask_judge(
    settings: JudgeSettings,
    prompt: PromptTemplate,
    variables: dict[str, str],
    reply_model: type[BaseModel],
    parse_text: Callable[[str, str], BaseModel],
    *,
    tag: str,
    copy_check: bool = False,
) -> Answered:
    """Fill ``prompt`` and ask the judge through the client's single retry/parse path.
    ``parse_text(reply, shown)`` reads a tagged-text reply; ``shown`` is the prompt's fixed
    text carrying the fenced candidate texts and the request's nonce
    (``PromptTemplate.shown``), so the parser can tell the judge's own verdict from an echo
    of the prompt or a quote of the candidate.

    A prompt with ``$nonce`` gets the request's nonce, derived from everything the request
    says (so the answer in it cannot know it). A failure with no verdict at all is blamed on
    the answer when the answer holds text that tries to steer the judge (a fake turn, chat
    tokens, "ignore previous instructions": ``injection.steers_judge``): a judge that wrote
    no verdict after reading it may well have obeyed it.

    ``copy_check``: the reply's analysis must be the judge's own, not a copy of the answer's
    judge-like text nor of a span of it flagged as addressed to the grader
    (``injection.copy_check``, ``judge.copied_reply``; for steps whose reply is an opinion of
    the whole answer)."""
    nonce = request_nonce(settings.client, prompt, variables)
    if nonce is not None:
        variables = {**variables, "nonce": nonce}
    static = prompt.shown(**variables)

    def build(mode: ReplyMode):
        return prompt.messages(mode, **variables)

    asked = await settings.client.ask(
        build, reply_model, lambda raw: parse_text(raw, static), tag=tag,
        config=settings.generate, attempts=settings.attempts,
        retry_temperature=settings.retry_temperature, nonce=variables.get("nonce"),
        copy_check=copy_sources(static.candidates) if copy_check else None,
    )
    cause, error = asked.cause, asked.error
    if cause == "judge" and asked.raw and any(steers_judge(c) for c in static.candidates):
        cause, error = "answer", (f"{error}; the answer holds text addressed to the judge "
                                  "(flagged), which it may have obeyed")
    return Answered(value=asked.value, error=error, raw=list(asked.raw), usage=asked.usage,
                    calls=asked.calls, path=asked.path, cause=cause, copied=asked.copied,
                    tokens=asked.tokens, span=asked.span, shown=static, key=asked.key)


M = TypeVar("M", bound=BaseModel)


@functools.cache
def sized_reply_model(base: type[M], list_field: str, n: int) -> type[M]:
    """``base`` with its list ``list_field`` holding exactly ``n`` items: the reply model of a
    batch of ``n`` verdicts. The schema keeps ``base``'s name as its title."""
    annotation = base.model_fields[list_field].annotation
    return create_model(base.__name__, __base__=base,  # type: ignore[call-overload]
                        **{list_field: (annotation, Field(min_length=n, max_length=n))})


def weigh(settings: JudgeSettings, ans: Answered, field: str, values: dict[str, float],
          text_span: Callable[[str, str], tuple[int, int]]) -> tuple[float | None, dict[str, Any]]:
    """The probability-weighted verdict of a parsed reply (``judge._expected``): the expected
    value of its ``field`` (JSON) or of the verdict ``text_span`` locates (text) over the
    judge's token probabilities, and what to record. ``values`` maps the verdict's forms to
    numbers (``SCORE_VALUES``; ``word_values`` for grades). With ``verdicts: integer``:
    (None, {}); when the reply gives no usable probabilities: (None, {"used": "integer",
    "reason": ...}), and the caller keeps the integer verdict."""
    if settings.verdicts != "expected" or ans.value is None or not ans.raw:
        return None, {}
    reply = ans.raw[-1]
    try:
        span = (field_span(reply, ans.span, field) if ans.span is not None
                else text_span(reply, ans.shown))
    except ReplyParseError:
        span = None
    got: Expected | str = ("the verdict's place in the reply was not found" if span is None
                           else expected_value(ans.tokens, reply, span, values))
    if isinstance(got, str):
        return None, {"used": "integer", "reason": got}
    # the run store keeps only the alternatives read (a rerun reads the same value)
    settings.client.keep_logprobs(ans.key, got.window)
    return got.value, {"used": "expected", **got.to_dict()}


def usage_dict(usage: Usage, calls: int) -> dict[str, int]:
    return {"calls": calls, "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens, "cached_tokens": usage.cached_tokens}


async def judge_score(
    settings: JudgeSettings,
    name: str,
    prompt: PromptTemplate,
    variables: dict[str, str],
    reply_model: type[BaseModel],
    parse_text: Callable[[str, str], BaseModel],
    *,
    tag: str | None = None,
    **details: Any,
) -> DimensionResult:
    """A dimension (or final step) that is one judge call ending in a 0–10 ``score``: the
    reply's other fields and ``details`` go into the result's details, with the path that
    found the verdict (``verdict_paths``); a failed ask makes the dimension unscored (or, when
    the answer caused it, its minimum) with the reason and the raw replies. Its reply is an
    opinion of the whole answer, so it must be the judge's own: a copy of the answer is
    re-asked, then blamed on the answer (``copied_replies`` in the details counts them)."""
    ans = await ask_judge(settings, prompt, variables, reply_model, parse_text, tag=tag or name,
                          copy_check=True)
    usage = usage_dict(ans.usage, ans.calls)
    if ans.copied:
        details = {**details, "copied_replies": ans.copied}
    if ans.value is None:
        return DimensionResult.unscored(name, ans.error or "no reply", cause=ans.cause or "judge",
                                        raw=ans.raw, usage=usage, **details)
    fields = ans.value.model_dump()
    score = float(fields.pop("score"))
    expected, verdict = weigh(settings, ans, "score", SCORE_VALUES, score_span)
    if verdict:
        details = {**details, "verdict": {"integer": score, **verdict}}
    return DimensionResult(name, score if expected is None else expected,
                           details={**fields, **details, "usage": usage,
                                    "verdict_paths": {ans.path: 1}})


def lower_of(with_text: DimensionResult, without_text: DimensionResult) -> DimensionResult:
    """The result of a holistic dimension for an answer holding text addressed to its grader
    (``reward.injection``): judged with and without that text, the lower score is kept, so
    such text can only lower the reward (issue 21). A side the judge left unscored leaves the
    dimension unscored (the reward is then null, as for any judge failure), unless the other
    side is at the minimum already, which no score is below. The kept result's details say
    both scores (``flagged_text``) and count both sides' calls."""
    sides = (with_text, without_text)
    unscored = [r for r in sides if r.score is None]
    if unscored:
        floor = [r for r in sides if r.score is not None and r.score <= MINIMUM]
        return floor[0] if floor else unscored[0]
    keep_with = float(with_text.score) <= float(without_text.score)  # type: ignore[arg-type]
    kept, other = (with_text, without_text) if keep_with else (without_text, with_text)
    usage = dict(kept.details.get("usage") or {})
    for k, v in (other.details.get("usage") or {}).items():
        usage[k] = usage.get(k, 0) + v
    details = {**kept.details, "usage": usage,
               "flagged_text": {"with": with_text.score, "without": without_text.score,
                                "kept": "with" if keep_with else "without"}}
    copies = sum(int(r.details.get("copied_replies", 0)) for r in (with_text, without_text))
    if copies:
        details["copied_replies"] = copies
    return DimensionResult(kept.name, kept.score, kept.unscored_reason, details, kept.cause)
