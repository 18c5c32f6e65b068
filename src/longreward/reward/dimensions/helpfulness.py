"""Helpfulness (LongReward §3.2): the judge sees only the question and the answer, reads a
rubric with few-shot examples, analyses, then scores 0–10. The document is deliberately not
shown: faithfulness and completeness are the dimensions that check against it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ._base import DimensionResult, JudgeSettings, judge_score
from ._parse import parse_score
from ._prompts import load_prompt
from ._registry import DimensionInput, dimension

NAME = "helpfulness"


class ScoredReply(BaseModel):
    analysis: str
    score: float = Field(ge=0, le=10)


def parse_scored_text(reply: str, prompt_text: str) -> ScoredReply:
    return ScoredReply(analysis=reply.strip(), score=parse_score(reply, prompt_text))


async def score_helpfulness(query: str, response: str, *, language: str,
                            settings: JudgeSettings) -> DimensionResult:
    return await judge_score(settings, NAME, load_prompt(NAME, language),
                             {"query": query, "response": response}, ScoredReply,
                             parse_scored_text)


@dimension(NAME, order=0, uses_document=False,
           description="question + answer; rubric and few-shot, analysis then 0–10")
async def _score(inp: DimensionInput) -> DimensionResult:
    return await score_helpfulness(inp.query, inp.response, language=inp.language,
                                   settings=inp.settings)
