"""What every dimension shares: its result type and the one way it asks the judge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ...judge import GenerateConfig, ModelClient, Usage
from ._prompts import PromptTemplate, ReplyMode


@dataclass
class DimensionResult:
    """A dimension is either scored (``score`` set) or unscored with a reason — never a
    silent default."""

    name: str
    score: float | None
    unscored_reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def unscored(cls, name: str, reason: str, **details: Any) -> DimensionResult:
        return cls(name=name, score=None, unscored_reason=reason, details=details)


@dataclass
class JudgeSettings:
    """How dimensions call the judge (shared by all four)."""

    client: ModelClient
    generate: GenerateConfig
    attempts: int = 5
    retry_temperature: float = 0.95


@dataclass
class Answered:
    """One structured judge reply, or why there is none."""

    value: BaseModel | None
    error: str | None
    raw: list[str]
    usage: Usage
    calls: int


async def ask_judge(
    settings: JudgeSettings,
    prompt: PromptTemplate,
    variables: dict[str, str],
    reply_model: type[BaseModel],
    parse_text: Callable[[str, str], BaseModel],
    *,
    tag: str,
) -> Answered:
    """Fill ``prompt`` and ask the judge through the client's single retry/parse path.
    ``parse_text(reply, shown)`` reads a tagged-text reply; ``shown`` is the prompt's fixed
    text carrying the fenced candidate texts (``PromptTemplate.shown``), so the parser can
    tell the judge's own verdict from an echo of the prompt or a quote of the candidate."""
    static = prompt.shown(**variables)

    def build(mode: ReplyMode):
        return prompt.messages(mode, **variables)

    asked = await settings.client.ask(
        build, reply_model, lambda raw: parse_text(raw, static), tag=tag,
        config=settings.generate, attempts=settings.attempts,
        retry_temperature=settings.retry_temperature,
    )
    return Answered(value=asked.value, error=asked.error, raw=list(asked.raw),
                    usage=asked.usage, calls=asked.calls)


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
    reply's other fields and ``details`` go into the result's details; a failed ask makes the
    dimension unscored with the reason and the raw replies."""
    ans = await ask_judge(settings, prompt, variables, reply_model, parse_text, tag=tag or name)
    usage = usage_dict(ans.usage, ans.calls)
    if ans.value is None:
        return DimensionResult.unscored(name, ans.error or "no reply", raw=ans.raw, usage=usage,
                                        **details)
    fields = ans.value.model_dump()
    score = float(fields.pop("score"))
    return DimensionResult(name, score, details={**fields, **details, "usage": usage})
