"""Faithfulness (LongReward §3.2, "fact-checking"):

1. the judge splits the answer into sentence-level factual statements, dropping functional
   sentences;
2. for each statement the top-k (paper: 5) ~128-token chunks of the document are retrieved;
3. the judge grades each statement fully / partially / not supported (1 / 0.5 / 0);
4. score = 10 · Σa / n.

Departures from the paper, on purpose:
- Statements come from the answer (issue 21; ``statement_grounding``, default "answer"): the
  split is a persuadable model that can turn the question into a statement the answer never
  made (a real 1.5B judge did, for an answer that was just ``:``). Each statement must be
  grounded in the answer's own text (``text.grounding``); on a failure the split is asked once
  more at the retry temperature, then the ungrounded statements are dropped, listed and
  counted (``n_dropped``). An answer left with none scores 0 like any answer with no statement.
  Dropping can only lower the score: dropped statements are graded too and the score is the
  lower of those without and with them, so a dropped statement earns nothing, and an
  unsupported one still costs (a split that cut "2.5" into "2." must not hide a false claim).
- Padding cannot dilute a false claim (``faithfulness_rule``, default "fixed_cost"): the
  score is 10 − ``unsupported_cost`` · Σ(1 − a), at least 0, instead of 10 · Σa / n, which
  rises when true but irrelevant sentences are added to an answer with an unsupported one.
- Statement grades are memoised per document: the evidence of a statement depends only on
  the statement and the document's index, so an identical statement in another answer (or
  repeated in the same answer) reuses the verdict instead of a new judge call.
- n = 0 (an answer with no factual statement: a refusal, a vague non-answer, nothing at
  all) scores 0, flagged ``details.no_statements = true``. Faithfulness rewards what the
  answer states and the document supports; an answer that states nothing has nothing
  supported. (Until 0.2 it scored 10, "nothing contradicts the document": an answer that
  said nothing then earned a free 10 on this dimension, and a policy learns that within a
  few hundred steps. An honest "the document does not say" loses this dimension but not the
  others, and every candidate of the prompt faces the same rule.)
- If some statements cannot be graded after the client's retries, the dimension is unscored
  (with the reason and the grades it did get) rather than averaged over a biased subset —
  unless the answer caused it (a statement whose own verdict-shaped text made its grade
  unreadable): then the dimension scores its minimum, like any answer-caused failure
  (``_base``).
- Optional batching (``grade_batch_size > 1``, off by default): the statements of one answer
  are graded B at a time in one call, against the union of their top-k excerpts (each
  excerpt shown once). This cuts judge calls and prompt tokens several-fold; each statement
  still gets its own verdict. A batch reply must give exactly one verdict per statement (a
  repeated or missing number is invalid, never "the last one wins": a statement could
  otherwise carry a fake ``[[1: fully]]`` line for another); a batch that stays invalid after
  the re-asks is graded one statement at a time.

The statements come from the answer, i.e. from the policy being trained, so they are fenced
as data in the grading prompts like the answer itself (see ``_prompts`` and
``judge._verdict``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, model_validator

from ...judge import ModelError, ReplyParseError
from ...text.grounding import ground_statement
from ._base import (
    MINIMUM,
    Answered,
    DimensionResult,
    JudgeSettings,
    ask_judge,
    sized_reply_model,
    usage_dict,
    weigh,
)
from ._parse import choice_span, parse_choice, parse_keyed_choices, parse_tagged_list, word_values
from ._prompts import load_prompt
from ._registry import DimensionInput, dimension
from ._shared import PromptWork

NAME = "faithfulness"
SUPPORT_VALUE = {"fully": 1.0, "partially": 0.5, "not": 0.0}
#: the forms a grade is written in (JSON's labels, the text words, Chinese included), valued
SUPPORT_FORMS = word_values(SUPPORT_VALUE)


class StatementsReply(BaseModel):
    statements: list[str]


class GradeReply(BaseModel):
    analysis: str
    support: Literal["fully", "partially", "not"]


class BatchGrade(BaseModel):
    statement: int
    analysis: str
    support: Literal["fully", "partially", "not"]


class BatchGradeReply(BaseModel):
    grades: list[BatchGrade]

    @model_validator(mode="after")
    def _one_per_statement(self) -> BatchGradeReply:
        numbers = [g.statement for g in self.grades]
        if sorted(numbers) != list(range(1, len(numbers) + 1)):
            raise ValueError(f"expected one grade for each of statements 1–{len(numbers)}, "
                             f"got numbers {numbers}")
        return self


def batch_reply_model(n: int) -> type[BatchGradeReply]:
    """The reply model of a batch of ``n`` statements: one grade for each of 1..n, no
    number repeated (a JSON reply is held to the same rule as a text one)."""
    return sized_reply_model(BatchGradeReply, "grades", n)


def parse_statements_text(reply: str, prompt_text: str) -> StatementsReply:
    return StatementsReply(statements=parse_tagged_list(reply, prompt_text, "statement"))


def parse_grade_text(reply: str, prompt_text: str) -> GradeReply:
    return GradeReply(analysis=reply.strip(), support=parse_choice(reply, prompt_text))  # type: ignore[arg-type]


def parse_batch_grade_text(reply: str, prompt_text: str, n: int) -> BatchGradeReply:
    grades = parse_keyed_choices(reply, prompt_text, n)
    return batch_reply_model(n)(grades=[BatchGrade(statement=k, analysis="", support=v)  # type: ignore[arg-type]
                                        for k, v in sorted(grades.items())])


#: how the grades make the score (``ScoreOptions.faithfulness_rule``)
RULES = ("fixed_cost", "mean")


def faithfulness_score(supports: Sequence[str | float], rule: str = "mean",
                       unsupported_cost: float = 2.5) -> float:
    """The score of the grades (n > 0), each a label (fully / partially / not) or a support
    a in [0, 1] (an expected support, ``verdicts: expected``): ``"mean"``, the paper's
    10 · Σa / n; ``"fixed_cost"``, 10 − cost · Σ(1 − a), at least 0, where a fully supported
    statement costs nothing, so true sentences added to an answer cannot dilute its
    unsupported ones (see the module docstring)."""
    a = [SUPPORT_VALUE[s] if isinstance(s, str) else float(s) for s in supports]
    if rule == "mean":
        return 10.0 * sum(a) / len(a)
    if rule != "fixed_cost":
        raise ValueError(f"rule must be one of {RULES}, not {rule!r}")
    return max(0.0, 10.0 - unsupported_cost * sum(1.0 - x for x in a))


def support_of(row: dict[str, Any]) -> float:
    """A graded statement's support a: the expected support when it was weighed
    (``verdicts: expected``), else its grade's value."""
    expected = row.get("expected_support")
    return float(expected) if expected is not None else SUPPORT_VALUE[row["support"]]


def _normalise_statement(s: str) -> str:
    return " ".join(s.split())


async def _pick(batch: asyncio.Future[dict[str, dict[str, Any]]], statement: str
                ) -> dict[str, Any]:
    return (await batch)[statement]


class RetrievalFailed(Exception):
    """The evidence for a statement could not be retrieved (raised, not returned, so that the
    failure is not memoised for the rest of the run)."""


def format_evidence(texts: list[str]) -> str:
    return "\n\n".join(f"[{i}] {t.strip()}" for i, t in enumerate(texts, start=1))


async def _grade(work: PromptWork, statement: str, *, settings: JudgeSettings,
                 top_k: int) -> dict[str, Any]:
    try:
        index = await work.doc.index()
        hits = (await index.search([statement], top_k))[0]
    except Exception as exc:  # retrieval backends (e.g. an embeddings API) can fail
        raise RetrievalFailed(f"retrieval failed: {type(exc).__name__}: {exc}") from exc
    chunks = work.doc.retrieval_chunks
    evidence = [chunks[h.chunk].text for h in hits]
    prompt = load_prompt("faithfulness_grading", work.language)
    ans = await ask_judge(settings, prompt,
                          {"evidence": format_evidence(evidence), "statement": statement},
                          GradeReply, parse_grade_text, tag=f"{NAME}.grade")
    out: dict[str, Any] = {
        "statement": statement,
        "evidence": _evidence_rows(work, hits),
        "usage": usage_dict(ans.usage, ans.calls),
    }
    if ans.value is None:
        out.update(support=None, error=ans.error, raw=ans.raw, cause=ans.cause)
    else:
        assert isinstance(ans.value, GradeReply)
        out.update(support=ans.value.support, analysis=ans.value.analysis, path=ans.path)
        expected, verdict = weigh(settings, ans, "support", SUPPORT_FORMS, choice_span)
        if verdict:
            out.update(expected_support=expected, verdict=verdict)
    return out


def _evidence_rows(work: PromptWork, hits: list[Any]) -> list[dict[str, Any]]:
    chunks = work.doc.retrieval_chunks
    return [{"chunk": h.chunk, "score": round(h.score, 4), "start": chunks[h.chunk].start,
             "end": chunks[h.chunk].end} for h in hits]


async def _grade_batch(work: PromptWork, statements: list[str], *, settings: JudgeSettings,
                       top_k: int) -> dict[str, dict[str, Any]]:
    try:
        index = await work.doc.index()
        hits = await index.search(statements, top_k)
    except Exception as exc:  # retrieval backends (e.g. an embeddings API) can fail
        raise RetrievalFailed(f"retrieval failed: {type(exc).__name__}: {exc}") from exc
    chunks = work.doc.retrieval_chunks
    union = sorted({h.chunk for hs in hits for h in hs})  # document order, each excerpt once
    listing = "\n".join(f"({i}) {s}" for i, s in enumerate(statements, start=1))
    prompt = load_prompt("faithfulness_grading_batch", work.language)
    n = len(statements)
    ans = await ask_judge(settings, prompt,
                          {"evidence": format_evidence([chunks[c].text for c in union]),
                           "statements": listing},
                          batch_reply_model(n),
                          lambda reply, shown: parse_batch_grade_text(reply, shown, n),
                          tag=f"{NAME}.grade_batch")
    usage = usage_dict(ans.usage, ans.calls)
    by_number: dict[int, BatchGrade] = {}
    if ans.value is not None:
        assert isinstance(ans.value, BatchGradeReply)
        by_number = {g.statement: g for g in ans.value.grades}
    out: dict[str, dict[str, Any]] = {}
    for i, (s, hs) in enumerate(zip(statements, hits, strict=True), start=1):
        g = by_number.get(i)
        if g is not None:
            out[s] = {"statement": s, "evidence": _evidence_rows(work, hs), "support": g.support,
                      "analysis": g.analysis, "path": ans.path, "batch_usage": usage,
                      "batch_size": len(statements)}
            if settings.verdicts == "expected":  # not weighed: see docs/verdicts.md
                out[s]["verdict"] = {"used": "integer",
                                     "reason": "grades of a batch are read as labels"}
    # The batch failed (no valid reply after the re-asks): grade each on its own, concurrently.
    skipped = [s for s in statements if s not in out]
    singles = await asyncio.gather(*(_grade(work, s, settings=settings, top_k=top_k)
                                     for s in skipped))
    out.update(zip(skipped, singles, strict=True))
    return {s: out[s] for s in statements}


async def _split(work: PromptWork, response: str, settings: JudgeSettings) -> Answered:
    prompt = load_prompt("faithfulness_statements", work.language)
    return await ask_judge(settings, prompt, {"query": work.query, "response": response},
                           StatementsReply, parse_statements_text, tag=f"{NAME}.statements")


def _statements(ans: Answered) -> list[str]:
    assert isinstance(ans.value, StatementsReply)
    return [s for s in (_normalise_statement(x) for x in ans.value.statements) if s]


def _ungrounded(statements: list[str], response: str, query: str) -> dict[str, str]:
    """The statements not grounded in the answer, each with why (``text.grounding``)."""
    out: dict[str, str] = {}
    for s in statements:
        g = ground_statement(s, response, query)
        if not g.grounded:
            out[s] = g.why
    return out


async def grounded_statements(work: PromptWork, response: str, *, settings: JudgeSettings,
                              grounding: str = "answer"
                              ) -> tuple[Answered, list[str], dict[str, Any]]:
    """The split of ``response`` and its statements grounded in the answer's own text.

    A split with an ungrounded statement is asked once more, at the retry temperature (a
    new request, so not the cached reply); the reply with more grounded statements is kept
    (the first on a tie) and its ungrounded statements are dropped, listed in the details
    with why. ``grounding="off"`` keeps every statement (the paper)."""
    ans = await _split(work, response, settings)
    if ans.value is None or grounding == "off":
        return ans, ([] if ans.value is None else _statements(ans)), {}
    statements = _statements(ans)
    dropped = _ungrounded(statements, response, work.query)
    info: dict[str, Any] = {}
    if dropped:
        again = await _split(work, response, replace(
            settings, generate=settings.generate.model_copy(
                update={"temperature": settings.retry_temperature})))
        info["split_reasked"] = True
        if again.value is not None:
            second = _statements(again)
            dropped2 = _ungrounded(second, response, work.query)
            if len(second) - len(dropped2) > len(statements) - len(dropped):
                ans = Answered(again.value, again.error, ans.raw + again.raw,
                               ans.usage + again.usage, ans.calls + again.calls,
                               again.path, again.cause)
                statements, dropped = second, dropped2
            else:
                ans = Answered(ans.value, ans.error, ans.raw, ans.usage + again.usage,
                               ans.calls + again.calls, ans.path, ans.cause)
    info["n_dropped"] = len(dropped)
    if dropped:
        info["dropped_statements"] = [{"statement": s, "why": why} for s, why in dropped.items()]
    return ans, [s for s in statements if s not in dropped], info


async def score_faithfulness(work: PromptWork, response: str, *, settings: JudgeSettings,
                             top_k: int = 5, grade_batch_size: int = 1,
                             grounding: str = "answer", rule: str = "mean",
                             unsupported_cost: float = 2.5) -> DimensionResult:
    ans, statements, grounded = await grounded_statements(work, response, settings=settings,
                                                          grounding=grounding)
    usage = usage_dict(ans.usage, ans.calls)
    if ans.value is None:
        return DimensionResult.unscored(NAME, f"statement extraction failed: {ans.error}",
                                        cause=ans.cause or "judge", raw=ans.raw, usage=usage)
    paths: dict[str, int] = {str(ans.path): 1}
    if not statements:
        return DimensionResult(NAME, MINIMUM, details={
            "n_statements": 0, "no_statements": True, "statements": [], "usage": usage,
            "verdict_paths": paths, **grounded,
            "note": "no factual statement grounded in the answer: nothing the document "
                    "supports, so 0 (see the module docstring)"})

    # The memo lives on the document (shared by every question about it); the prompt language
    # is part of the key, so a Chinese question never reuses a grade argued in English.
    def key_of(statement: str) -> str:
        return f"grade:{work.language}:" + hashlib.sha256(statement.encode("utf-8")).hexdigest()

    def grade_task(statement: str) -> asyncio.Future[dict[str, Any]]:
        return work.doc.shared(key_of(statement), lambda: _grade(work, statement,
                                                                 settings=settings, top_k=top_k))

    # Dropped statements are graded too: they earn nothing, but they may still cost (below),
    # so that a statement the split copied awkwardly (a number cut in two) never lets an
    # unsupported claim of the answer escape
    dropped = [d["statement"] for d in grounded.get("dropped_statements", [])]
    unique = list(dict.fromkeys(statements + dropped))
    if grade_batch_size > 1:
        # Statements not graded yet (by this or another answer) are batched; each gets a memo
        # entry that reads its verdict from the batch, so later answers reuse it as usual.
        fresh = [s for s in unique if not work.doc.has(key_of(s))]
        for b in range(0, len(fresh), grade_batch_size):
            batch = fresh[b:b + grade_batch_size]
            bkey = f"batch:{work.language}:" + hashlib.sha256("\x00".join(batch).encode("utf-8")).hexdigest()
            btask = work.doc.shared(bkey, lambda batch=batch: _grade_batch(
                work, batch, settings=settings, top_k=top_k))
            for s in batch:
                work.doc.shared(key_of(s), lambda s=s, btask=btask: _pick(btask, s))
    outcomes = await asyncio.gather(*(grade_task(s) for s in unique), return_exceptions=True)
    graded: dict[str, dict[str, Any]] = {}
    for s, outcome in zip(unique, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, (RetrievalFailed, ModelError, ReplyParseError)):
                # A bug or a fatal condition is not "this statement could not be graded":
                # raised, it reaches the scorer, which logs the traceback and counts it.
                raise outcome
            # Not memoised (see ``_shared.once``): a later answer with this statement retries.
            error = (str(outcome) if isinstance(outcome, RetrievalFailed)
                     else f"{type(outcome).__name__}: {outcome}")
            outcome = {"statement": s, "support": None, "error": error, "cause": "judge"}
        graded[s] = outcome
    rows = [graded[s] for s in statements]
    dropped_rows = [graded[s] for s in dropped]
    for d in grounded.get("dropped_statements", []):
        d["support"] = graded[d["statement"]]["support"]
    failed = [r for r in rows + dropped_rows if r["support"] is None]
    for r in rows:
        if r.get("path"):
            paths[r["path"]] = paths.get(r["path"], 0) + 1
    details: dict[str, Any] = {"n_statements": len(statements),
                               "n_unique_statements": len(unique),
                               "statements": rows, "usage": usage, "verdict_paths": paths,
                               **grounded}
    if failed:
        # one statement the answer made ungradable is enough: its minimum can only lower
        # the reward, while leaving it out would let the answer drop a statement it fears
        by_answer = [r for r in failed if r.get("cause") == "answer"]
        return DimensionResult.unscored(
            NAME, f"{len(failed)} of {len(rows) + len(dropped_rows)} statements could not be "
            "graded: "
            f"{(by_answer or failed)[0].get('error')}",
            cause="answer" if by_answer else "judge", **details)
    supports = [r["support"] for r in rows]
    details["counts"] = {k: supports.count(k) for k in SUPPORT_VALUE}
    details["rule"] = rule
    score = faithfulness_score(supports, rule, unsupported_cost)
    values: list[float | str] = list(supports)
    if settings.verdicts == "expected":
        used = [str((r.get("verdict") or {}).get("used", "integer")) for r in rows]
        details["verdict"] = {"integer": score, "used": used[0] if len(set(used)) == 1
                              else "mixed", "expected_statements": used.count("expected"),
                              "integer_statements": used.count("integer")}
        values = [support_of(r) for r in rows]
        score = faithfulness_score(values, rule, unsupported_cost)
    if dropped_rows:
        # dropping can only lower the score: the lower of the scores without and with the
        # dropped statements (under the fixed cost, that is their unsupported ones' cost)
        extra = [support_of(r) if settings.verdicts == "expected" else r["support"]
                 for r in dropped_rows]
        with_dropped = faithfulness_score(values + extra, rule, unsupported_cost)
        if with_dropped < score:
            details["dropped_cost"] = round(score - with_dropped, 6)
            score = with_dropped
    return DimensionResult(NAME, score, details=details)


@dimension(NAME, order=2, uses_document=True,
           description="factual statements grounded in the answer, graded against their "
                       "top-k evidence chunks; 10 − cost per unsupported one (or 10·Σa/n)")
async def _score(inp: DimensionInput) -> DimensionResult:
    o = inp.options
    return await score_faithfulness(inp.work, inp.response, settings=inp.settings,
                                    top_k=o.retrieval.top_k,
                                    grade_batch_size=o.grade_batch_size,
                                    grounding=o.statement_grounding, rule=o.faithfulness_rule,
                                    unsupported_cost=o.unsupported_cost)
