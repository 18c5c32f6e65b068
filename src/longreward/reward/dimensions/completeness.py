"""Completeness (LongReward §3.2):

1. the document is cut into ~4096-token chunks and the judge extracts, from each, the
   information relevant to the question ("no relevant information" is allowed);
2. each chunk's findings are labelled with where the chunk lies ("25%–50%"), as the paper's
   reference code does, so the judge can tell early from late material;
3. the judge scores 0–10 how well the answer covers the gathered points.

Step 1 depends only on (document, question), so it runs once per prompt whatever the number
of candidates (``PromptWork.shared``). If any chunk's extraction fails after retries the
dimension is unscored: judging coverage against a partial list of points would reward
answers for skipping the part the judge never read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from ...text import position_label
from ._base import DimensionResult, JudgeSettings, ask_judge, judge_score, usage_dict
from ._parse import parse_tagged_list
from ._prompts import load_prompt
from ._registry import DimensionInput, dimension
from ._shared import PromptWork
from .helpfulness import ScoredReply, parse_scored_text

NAME = "completeness"

_NO_POINTS = {
    "en": "(No part of the document contains information relevant to the question.)",
    "zh": "（文档中没有与问题相关的信息。）",
}


class ExtractionReply(BaseModel):
    relevant: bool
    points: list[str]


def parse_extraction_text(reply: str, prompt_text: str) -> ExtractionReply:
    points = parse_tagged_list(reply, prompt_text, "point")
    return ExtractionReply(relevant=bool(points), points=points)


class CoverageReply(ScoredReply):
    """Same shape as a helpfulness reply; its own class so the schema has its own name."""


def parse_coverage_text(reply: str, prompt_text: str) -> CoverageReply:
    return CoverageReply(**parse_scored_text(reply, prompt_text).model_dump())


async def _extract_chunk(work: PromptWork, i: int, *, settings: JudgeSettings) -> dict[str, Any]:
    chunk = work.doc.extraction_chunks[i]
    position = position_label(chunk, len(work.doc.context))
    prompt = load_prompt("completeness_extraction", work.language)
    ans = await ask_judge(settings, prompt,
                          {"position": position, "chunk": chunk.text, "query": work.query},
                          ExtractionReply, parse_extraction_text, tag=f"{NAME}.extract")
    out: dict[str, Any] = {"chunk": i, "position": position,
                           "usage": usage_dict(ans.usage, ans.calls)}
    if ans.value is None:
        out.update(points=None, error=ans.error, raw=ans.raw)
    else:
        assert isinstance(ans.value, ExtractionReply)
        points = [p.strip() for p in ans.value.points if p.strip()]
        # A judge may say relevant=false yet list points, or the reverse; the points decide.
        out.update(points=points)
    return out


async def extract_points(work: PromptWork, *, settings: JudgeSettings) -> list[dict[str, Any]]:
    """Per-chunk findings for (document, question); shared by all candidates of the prompt."""

    async def run() -> list[dict[str, Any]]:
        n = len(work.doc.extraction_chunks)
        return list(await asyncio.gather(*(_extract_chunk(work, i, settings=settings)
                                           for i in range(n))))

    return await work.shared("completeness.extract", run)


def format_points(findings: list[dict[str, Any]], language: str) -> str:
    lines = [f"- [{f['position']}] {p}" for f in findings for p in (f["points"] or [])]
    return "\n".join(lines) if lines else _NO_POINTS.get(language, _NO_POINTS["en"])


async def score_completeness(work: PromptWork, response: str, *,
                             settings: JudgeSettings) -> DimensionResult:
    findings = await extract_points(work, settings=settings)
    failed = [f for f in findings if f["points"] is None]
    points_view = [{"position": f["position"], "points": f["points"]} for f in findings]
    if failed:
        f = failed[0]
        hint = ("; the judge's context window is too small for the chunks: lower "
                "completeness_chunk_tokens (--completeness-chunk-tokens)"
                if "ContextTooLong" in str(f["error"]) else "")
        # the document's and the question's step, the same for every answer: never the
        # answer's fault, whatever the extraction's own reason was
        return DimensionResult.unscored(
            NAME, f"information extraction failed for {len(failed)} of {len(findings)} "
            f"document chunks (first: chunk {f['chunk']} at {f['position']}: {f['error']})"
            f"{hint}", cause="judge", points=points_view)
    return await judge_score(
        settings, NAME, load_prompt("completeness_coverage", work.language),
        {"query": work.query, "points": format_points(findings, work.language),
         "response": response},
        CoverageReply, parse_coverage_text, tag=f"{NAME}.coverage", points=points_view,
        n_points=sum(len(f["points"]) for f in findings), n_chunks=len(findings))


@dimension(NAME, order=3, uses_document=True,
           description="query-relevant points extracted per 4096-token chunk; coverage 0–10")
async def _score(inp: DimensionInput) -> DimensionResult:
    return await score_completeness(inp.work, inp.response, settings=inp.settings)
