"""Logicality (LongReward §3.2): the judge first lists the answer's logical errors
(contradictions, non sequiturs, calculation slips), then scores 0–10. Asking for the errors
before the score is the paper's way of making the score follow from evidence."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ._base import DimensionResult, JudgeSettings, judge_score
from ._parse import parse_bullets, parse_score
from ._prompts import load_prompt
from ._registry import DimensionInput, dimension

NAME = "logicality"


class LogicReply(BaseModel):
    errors: list[str]
    analysis: str
    score: float = Field(ge=0, le=10)


def parse_logic_text(reply: str, prompt_text: str) -> LogicReply:
    return LogicReply(errors=parse_bullets(reply, prompt_text), analysis=reply.strip(),
                      score=parse_score(reply, prompt_text))


async def score_logicality(query: str, response: str, *, language: str,
                           settings: JudgeSettings) -> DimensionResult:
    return await judge_score(settings, NAME, load_prompt(NAME, language),
                             {"query": query, "response": response}, LogicReply,
                             parse_logic_text)


@dimension(NAME, order=1, uses_document=False,
           description="question + answer; logical errors listed first, then 0–10")
async def _score(inp: DimensionInput) -> DimensionResult:
    return await score_logicality(inp.query, inp.response, language=inp.language,
                                  settings=inp.settings)
