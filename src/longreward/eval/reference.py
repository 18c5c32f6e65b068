"""``longreward eval reference``: grade answers against a reference answer, as LongBench-Chat
does.

LongBench-Chat (the LongReward paper's main benchmark, §4.2: 69.8 → 72.6 for Llama-3.1-8B)
has a judge compare each answer with a person's reference answer, helped by a few scored
example answers to the same question, on a 1–10 scale, and reports the mean × 10. This module
does the same with our own prompt (``prompts/reference.en.md`` / ``.zh.md``) through the one
judge path. The judge does not see the document: the reference stands for it, which is what
makes this cheap enough to run on every checkpoint.

Answers come from a file (rows with ``prompt_id`` and ``response``) or are generated through
``sample_file`` from a policy endpoint (one answer per question by default). Both the sampling
and the grading keep their calls in the run store: a rerun makes no call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..config import ScoreOptions
from ..errors import RecordError
from ..io.files import default_run_dir, iter_rows, write_rejected
from ..io.records import FieldMap
from ..reward.dimensions import (
    DimensionResult,
    JudgeSettings,
    judge_score,
    load_prompt,
    parse_score,
)
from ..reward.scorer import LongReward, build_client
from ..store import cached_calls
from ..text import detect_language
from ._run import PROMPTS_PACKAGE, tag_costs, write_result

RESULT_KIND = "longreward.eval.reference"
TAG = "reference"

_NO_EXAMPLES = {"en": "(no graded examples for this question)", "zh": "（本题没有评分示例）"}
_EXAMPLE_HEAD = {"en": "Example {k}, graded {score:g}:", "zh": "示例 {k}，得分 {score:g}："}


class ReferenceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: field of a question row holding the reference answer
    reference_field: str = "reference"
    #: field of a question row holding scored example answers: [{"answer": ..., "score": 1–10}]
    examples_field: str = "examples"
    #: group the results by this field of the answer rows (e.g. "model"); None: one group
    by: str | None = None


class ReferenceReply(BaseModel):
    analysis: str
    score: float = Field(ge=1, le=10)


def parse_reference_text(reply: str, prompt_text: str) -> ReferenceReply:
    return ReferenceReply(analysis=reply.strip(), score=parse_score(reply, prompt_text,
                                                                    low=1, high=10))


@dataclass
class Question:
    id: str
    query: str
    reference: str
    examples: list[tuple[str, float]] = field(default_factory=list)


def _text(row: dict[str, Any], key: str, label: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RecordError(label, key, "missing or empty" if value is None or value == ""
                          else f"must be a non-empty string, got {type(value).__name__}")
    return value


def read_questions(path: str | Path, fields: FieldMap, options: ReferenceOptions
                   ) -> tuple[dict[str, Question], list[RecordError]]:
    out: dict[str, Question] = {}
    errors: list[RecordError] = []
    for label, row in iter_rows(path, id_field=fields.id):
        if isinstance(row, RecordError):
            errors.append(row)
            continue
        try:
            qid = row.get(fields.id)
            if qid is None or not str(qid).strip():
                raise RecordError(label, fields.id, "missing or empty id")
            query = _text(row, fields.query, label)
            reference = _text(row, options.reference_field, label)
            examples = []
            for k, ex in enumerate(row.get(options.examples_field) or []):
                where = f"{options.examples_field}[{k}]"
                if not isinstance(ex, dict):
                    raise RecordError(label, where, "must be an object with answer and score")
                text = ex.get("answer", ex.get("response"))
                score = ex.get("score")
                if not isinstance(text, str) or not text.strip():
                    raise RecordError(label, where, "needs a non-empty 'answer'")
                if (not isinstance(score, (int, float)) or isinstance(score, bool)
                        or not 1 <= score <= 10):
                    raise RecordError(label, where, f"needs a 'score' from 1 to 10, got {score!r}")
                examples.append((text, float(score)))
        except RecordError as exc:
            errors.append(exc)
            continue
        if str(qid) in out:
            errors.append(RecordError(label, fields.id, f"duplicate question id {qid!r}"))
            continue
        out[str(qid)] = Question(str(qid), query, reference, examples)
    return out, errors


def format_examples(examples: list[tuple[str, float]], language: str) -> str:
    lang = language if language in _NO_EXAMPLES else "en"
    if not examples:
        return _NO_EXAMPLES[lang]
    return "\n\n".join(f"{_EXAMPLE_HEAD[lang].format(k=k, score=s)}\n<example_answer>\n"
                       f"{text.strip()}\n</example_answer>"
                       for k, (text, s) in enumerate(examples, start=1))


async def grade_answer(settings: JudgeSettings, question: Question, response: str, *,
                       language: str) -> DimensionResult:
    """One 1–10 grade of ``response`` against the question's reference (unscored with the
    reason when the judge fails)."""
    return await judge_score(
        settings, TAG, load_prompt("reference", language, PROMPTS_PACKAGE),
        {"query": question.query, "reference": question.reference,
         "examples": format_examples(question.examples, language), "response": response},
        ReferenceReply, parse_reference_text, tag=TAG)


def _answer_rows(path: str | Path, fields: FieldMap, questions: dict[str, Question]
                 ) -> tuple[list[dict[str, Any]], list[RecordError]]:
    rows: list[dict[str, Any]] = []
    errors: list[RecordError] = []
    for label, row in iter_rows(path, id_field=fields.id):
        if isinstance(row, RecordError):
            errors.append(row)
            continue
        pid = row.get(fields.prompt_id)
        if pid is None or str(pid) not in questions:
            errors.append(RecordError(label, fields.prompt_id,
                                      f"{pid!r} names no question of the questions file"))
            continue
        try:
            _text(row, fields.response, label)
        except RecordError as exc:
            errors.append(exc)
            continue
        rows.append(row)
    return rows, errors


def _language(options: ScoreOptions, question: Question) -> str:
    if options.language != "auto":
        return options.language
    return detect_language(question.query + "\n" + question.reference)


async def evaluate_reference(
    questions_path: str | Path,
    output_path: str | Path,
    options: ScoreOptions,
    reference: ReferenceOptions | None = None,
    *,
    answers_path: str | Path | None = None,
    sample_options: Any = None,
    run_dir: str | Path | None = None,
    client: Any = None,
    on_start: Callable[[int, int], None] | None = None,
    on_answer: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Grade the answers (``answers_path``, or sampled with ``sample_options`` from the policy)
    against the questions' references; write and return the result. A coroutine.
    ``on_start(total, 0)`` and ``on_answer()`` drive a progress display of the grading."""
    from ..stages.sample import sample_file

    reference = reference or ReferenceOptions()
    started = time.perf_counter()
    output_path = Path(output_path)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(output_path)
    fields = options.fields
    questions, rejected = read_questions(questions_path, fields, reference)
    sampled: dict[str, Any] | None = None
    if answers_path is None:
        if sample_options is None:
            raise ValueError("give answers_path, or sample_options to generate the answers")
        answers_path = run_dir / "answers.jsonl"
        summary = await sample_file(questions_path, answers_path, sample_options,
                                    run_dir=run_dir / "sample")
        sampled = summary.as_dict()
        rejected += summary.errors
        # sample writes the default field names, whatever the questions file used
        answer_fields = FieldMap()
    else:
        answer_fields = fields
    answers, bad = _answer_rows(answers_path, answer_fields, questions)
    rejected += bad
    write_rejected(output_path, rejected)

    scorer = LongReward(client or build_client(options), options=options)

    async def grade(a: dict[str, Any]) -> Any:
        question = questions[str(a[answer_fields.prompt_id])]
        out = await grade_answer(scorer.settings, question, a[answer_fields.response],
                                 language=_language(options, question))
        if on_answer is not None:
            on_answer()
        return out

    if on_start is not None:
        on_start(len(answers), 0)
    try:
        with cached_calls(scorer.client, run_dir):
            grades = await asyncio.gather(*(grade(a) for a in answers))
        stats = scorer.client.snapshot()
    finally:
        if client is None:
            await scorer.aclose()

    from .facts import group_value

    groups: dict[str, list[DimensionResult]] = {}
    per_answer = []
    for a, g in zip(answers, grades, strict=True):
        name = group_value(a, reference.by)
        groups.setdefault(name, []).append(g)
        per_answer.append({"id": a.get(answer_fields.id), "prompt_id": a[answer_fields.prompt_id],
                           "group": name, "score": g.score, "unscored": g.unscored_reason,
                           "analysis": g.details.get("analysis")})
    table = {}
    for name, gs in groups.items():
        scores = [g.score for g in gs if g.score is not None]
        table[name] = {"answers": len(gs), "graded": len(scores),
                       "unscored": len(gs) - len(scores),
                       "mean": sum(scores) / len(scores) if scores else None,
                       "score_x10": 10 * sum(scores) / len(scores) if scores else None}
    result = {
        "kind": RESULT_KIND, "version": 1, "questions": len(questions),
        "answers": len(answers), "rejected": len(rejected), "groups": table,
        "scale": "mean of 1–10 grades × 10 (as LongBench-Chat reports)",
        "judge": scorer.judge_identity, "sampled": sampled,
        "cost": tag_costs(stats.get("by_tag", {}), [TAG]),
        "slowest_calls": stats["slowest_calls"], "per_answer": per_answer,
        "seconds": time.perf_counter() - started,
        "exit_code": 1 if rejected or any(g.score is None for g in grades) else 0,
    }
    write_result(output_path, result)
    return result
