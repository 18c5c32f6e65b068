"""Completeness (LongReward §3.2):

1. the document is cut into ~4096-token chunks and the judge extracts, from each, the
   information relevant to the question ("no relevant information" is allowed);
2. each chunk's findings are labelled with where the chunk lies ("25%–50%"), as the paper's
   reference code does, so the judge can tell early from late material;
3. coverage, in one of two modes (``ScoreOptions.completeness_mode``):
   - ``"checklist"`` (default; a departure from the paper, issue 21): the points of every
     chunk become one numbered checklist, deduplicated (``build_checklist``); the judge marks
     each point covered / partly / not (1 / 0.5 / 0), ``checklist_batch_size`` points per
     call, the answer fenced and the marks keyed by the request's nonce like every verdict;
     completeness = 10 · Σ / n. An answer that covers no point scores 0 whatever it says
     about itself: its claims about its own coverage are no point of the checklist. When
     the document holds no relevant point (an empty checklist), completeness is 10 for
     every candidate of the prompt, marked ``details.no_points``: nothing to cover, nothing
     missed, and the same value for all candidates of the prompt, so no answer gains from
     it (an answer that says nothing still meets the non-answer floor, ``reward.scorer``);
   - ``"holistic"``: the paper's single 0–10 rating of how well the answer covers the
     gathered points.

Step 1 depends only on (document, question), so it runs once per prompt whatever the number
of candidates (``PromptWork.shared``); so does the checklist. If any chunk's extraction
fails after retries the dimension is unscored: judging coverage against a partial list of
points would reward answers for skipping the part the judge never read. Likewise, a
checklist batch whose marks cannot be read after the re-asks leaves the dimension unscored
(or at its minimum, when the answer's text caused it).
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from typing import Any, Literal

from pydantic import BaseModel

from ...text import position_label
from ...text.grounding import content_terms
from ._base import (
    Answered,
    DimensionResult,
    JudgeSettings,
    ask_judge,
    judge_score,
    sized_reply_model,
    usage_dict,
)
from ._parse import parse_keyed_choices, parse_tagged_list
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


#: how close two points' content terms must be (Jaccard) for the later one to be a duplicate
DUPLICATE_OVERLAP = 0.8
#: a mark's value
COVERAGE_VALUE = {"covered": 1.0, "partly": 0.5, "not": 0.0}
#: the words a text-mode mark may use (the faithfulness words are read as their equivalents)
_MARK_WORDS = {"covered": "covered", "fully covered": "covered", "fully": "covered",
               "yes": "covered", "partly": "partly", "partially": "partly",
               "partly covered": "partly", "partially covered": "partly", "not": "not",
               "not covered": "not", "no": "not", "已覆盖": "covered", "覆盖": "covered",
               "部分覆盖": "partly", "部分": "partly", "未覆盖": "not", "没有覆盖": "not"}
#: what an empty checklist (no relevant point in the document) scores, for every candidate
NO_POINTS_SCORE = 10.0


def _point_key(point: str) -> str:
    text = unicodedata.normalize("NFKC", point).casefold()
    return " ".join(re.sub(r"[^\w\s%.]|(?<!\d)\.|\.(?!\d)", " ", text).split())


def build_checklist(findings: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The per-chunk points as one checklist, in document order, each once: a point whose
    normalised text (NFKC, case-folded, punctuation and spacing dropped) equals an earlier
    one's, or whose content terms (``text.grounding.content_terms``: stemmed words, CJK
    bigrams, numbers) overlap an earlier one's by ``DUPLICATE_OVERLAP`` or more (Jaccard),
    is a duplicate and left out. Chunks overlap and a fact is often restated, so without
    this one fact would count two or three times."""
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    kept_terms: list[set[str]] = []
    for f in findings:
        for p in f["points"] or []:
            key = _point_key(p)
            terms = content_terms(p)
            if not key or key in seen or any(
                    terms and len(terms & t) / len(terms | t) >= DUPLICATE_OVERLAP
                    for t in kept_terms):
                continue
            seen.add(key)
            kept_terms.append(terms)
            out.append({"position": f["position"], "point": p})
    return out


class Mark(BaseModel):
    analysis: str
    coverage: Literal["covered", "partly", "not"]


class ChecklistReply(BaseModel):
    marks: list[Mark]


def checklist_reply_model(n: int) -> type[ChecklistReply]:
    """One mark per point, in the checklist's order (the position is the number, so a JSON
    reply cannot give one point two marks)."""
    return sized_reply_model(ChecklistReply, "marks", n)


def parse_checklist_text(reply: str, prompt_text: str, n: int) -> ChecklistReply:
    marks = parse_keyed_choices(reply, prompt_text, n, _MARK_WORDS)
    return checklist_reply_model(n)(marks=[Mark(analysis="", coverage=marks[k])  # type: ignore[arg-type]
                                           for k in range(1, n + 1)])


async def _mark_batch(work: PromptWork, response: str, points: list[dict[str, str]],
                      settings: JudgeSettings) -> tuple[list[dict[str, Any]] | None, Answered]:
    listing = "\n".join(f"({i}) [{p['position']}] {p['point']}"
                         for i, p in enumerate(points, start=1))
    n = len(points)
    ans = await ask_judge(settings, load_prompt("completeness_checklist", work.language),
                          {"query": work.query, "points": listing, "response": response},
                          checklist_reply_model(n),
                          lambda reply, shown: parse_checklist_text(reply, shown, n),
                          tag=f"{NAME}.checklist")
    if ans.value is None:
        return None, ans
    assert isinstance(ans.value, ChecklistReply)
    return [{"point": p["point"], "position": p["position"], "coverage": m.coverage,
             "analysis": m.analysis} for p, m in zip(points, ans.value.marks, strict=True)], ans


async def score_checklist(work: PromptWork, response: str, *, settings: JudgeSettings,
                          batch_size: int = 20, grounded: bool = True) -> DimensionResult:
    """Completeness as a checklist (see the module docstring). ``grounded``: a point the
    judge marks covered or partly covered must share a content term (a word stem, a Chinese
    character bigram or a number: ``text.grounding.content_terms``) with the answer, else
    the mark counts as "not" (``ungrounded`` in the mark). Found with the real 1.5B judge,
    which marked 3 and 7 of 9 points covered by answers that were only "?" and
    "Thought process:": nothing the answer does not say ever covers a point."""
    findings = await extract_points(work, settings=settings)
    failed = _extraction_failed(findings)
    if failed is not None:
        return failed
    points = build_checklist(findings)
    n_found = sum(len(f["points"]) for f in findings)
    if not points:
        return DimensionResult(NAME, NO_POINTS_SCORE, details={
            "mode": "checklist", "no_points": True, "n_points": 0, "n_covered": 0,
            "marks": [], "n_chunks": len(findings),
            "note": "the document holds no point relevant to the question: the same score "
                    "for every candidate of the prompt"})
    batches = [points[b:b + batch_size] for b in range(0, len(points), batch_size)]
    done = await asyncio.gather(*(_mark_batch(work, response, b, settings) for b in batches))
    calls = sum(ans.calls for _, ans in done)
    usage = done[0][1].usage
    for _, ans in done[1:]:
        usage = usage + ans.usage
    failed = [ans for rows, ans in done if rows is None]
    if failed:
        # a batch the answer made unreadable is enough for the minimum: leaving it out would
        # let the answer drop the points it fears (as for faithfulness's statements)
        by_answer = [a for a in failed if a.cause == "answer"]
        first = (by_answer or failed)[0]
        return DimensionResult.unscored(
            NAME, f"checklist marks failed for {len(failed)} of {len(done)} batches: "
            f"{first.error}", cause="answer" if by_answer else "judge", raw=first.raw,
            usage=usage_dict(usage, calls), mode="checklist", n_points=len(points))
    marks: list[dict[str, Any]] = [m for rows, _ in done for m in rows or []]
    if grounded:
        said = content_terms(response)
        for m in marks:
            if m["coverage"] != "not" and not (content_terms(str(m.get("point", ""))) & said):
                m["judged_coverage"], m["coverage"], m["ungrounded"] = m["coverage"], "not", True
    paths: dict[str, int] = {}
    for _, ans in done:
        paths[str(ans.path)] = paths.get(str(ans.path), 0) + 1
    total = sum(COVERAGE_VALUE[m["coverage"]] for m in marks)
    return DimensionResult(NAME, 10.0 * total / len(marks), details={
        "mode": "checklist", "marks": marks, "n_points": len(marks),
        "n_points_extracted": n_found,
        "n_covered": sum(1 for m in marks if m["coverage"] != "not"),
        "counts": {k: sum(1 for m in marks if m["coverage"] == k) for k in COVERAGE_VALUE},
        "n_ungrounded_marks": sum(1 for m in marks if m.get("ungrounded")),
        "n_chunks": len(findings), "usage": usage_dict(usage, calls), "verdict_paths": paths})


def _extraction_failed(findings: list[dict[str, Any]]) -> DimensionResult | None:
    failed = [f for f in findings if f["points"] is None]
    if not failed:
        return None
    points_view = [{"position": f["position"], "points": f["points"]} for f in findings]
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


async def score_completeness(work: PromptWork, response: str, *,
                             settings: JudgeSettings) -> DimensionResult:
    """The paper's holistic coverage rating (``completeness_mode="holistic"``)."""
    findings = await extract_points(work, settings=settings)
    failed = _extraction_failed(findings)
    if failed is not None:
        return failed
    points_view = [{"position": f["position"], "points": f["points"]} for f in findings]
    return await judge_score(
        settings, NAME, load_prompt("completeness_coverage", work.language),
        {"query": work.query, "points": format_points(findings, work.language),
         "response": response},
        CoverageReply, parse_coverage_text, tag=f"{NAME}.coverage", points=points_view,
        n_points=sum(len(f["points"]) for f in findings), n_chunks=len(findings),
        mode="holistic")


@dimension(NAME, order=3, uses_document=True,
           description="query-relevant points extracted per 4096-token chunk, one "
                       "deduplicated checklist marked covered/partly/not: 10·Σ/n (or the "
                       "paper's holistic 0–10)")
async def _score(inp: DimensionInput) -> DimensionResult:
    if inp.options.completeness_mode == "holistic":
        return await score_completeness(inp.work, inp.response, settings=inp.settings)
    return await score_checklist(inp.work, inp.response, settings=inp.settings,
                                 batch_size=inp.options.checklist_batch_size,
                                 grounded=inp.options.statement_grounding == "answer")
