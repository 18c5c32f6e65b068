"""Scripted judge replies for the scorer tests: the double's ``responder`` routes a request
to a per-step reply function by which prompt it carries (schema title in JSON mode, the
prompt's static system text in text mode)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from longreward.reward.dimensions import load_prompt

STEPS = ("helpfulness", "logicality", "faithfulness_statements", "faithfulness_grading",
         "completeness_extraction", "completeness_coverage", "completeness_checklist")
SCHEMA_TITLES = {"ScoredReply": "helpfulness", "LogicReply": "logicality",
                 "StatementsReply": "faithfulness_statements", "GradeReply": "faithfulness_grading",
                 "ExtractionReply": "completeness_extraction",
                 "CoverageReply": "completeness_coverage",
                 "ChecklistReply": "completeness_checklist"}


def step_of(body: dict[str, Any]) -> tuple[str, str]:
    """(step name, mode) of a chat request sent by the scorer."""
    system = body["messages"][0]["content"]
    for name in STEPS:
        for lang in ("en", "zh"):
            if system.startswith(load_prompt(name, lang).system):
                mode = "json" if body.get("response_format") else "text"
                return name, mode
    raise AssertionError(f"unknown prompt: {system[:80]!r}")


def user_text(body: dict[str, Any]) -> str:
    return body["messages"][-1]["content"]


def language_of(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"]
    return "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in system[:200]) else "en"


Reply = Callable[[dict[str, Any]], dict[str, Any] | str]


class Script:
    """Per-step JSON replies; in text mode the same content is rendered in tagged text."""

    def __init__(self, **steps: Reply) -> None:
        self.steps = steps
        self.seen: list[tuple[str, str]] = []

    def __call__(self, body: dict[str, Any]) -> str | None:
        name, mode = step_of(body)
        self.seen.append((name, mode))
        fn = self.steps.get(name)
        if fn is None:
            return None  # the double's default schema-valid reply
        value = fn(body)
        if isinstance(value, str):
            return value
        return json.dumps(value) if mode == "json" else as_text(name, value)


def as_text(step: str, value: dict[str, Any]) -> str:
    if step in ("helpfulness", "completeness_coverage"):
        return f"{value.get('analysis', 'ok')}\n[[{value['score']}]]"
    if step == "logicality":
        errs = "\n".join(f"- {e}" for e in value.get("errors", [])) or "none"
        return f"Errors found:\n{errs}\n{value.get('analysis', '')}\n[[{value['score']}]]"
    if step == "faithfulness_statements":
        items = "".join(f"<statement>{s}</statement>\n" for s in value["statements"])
        return items or "<none/>"
    if step == "faithfulness_grading":
        return f"{value.get('analysis', 'checked')}\n[[{value['support']}]]"
    if step == "completeness_extraction":
        items = "".join(f"<point>{p}</point>\n" for p in value["points"])
        return items or "<none/>"
    if step == "completeness_checklist":
        return "\n".join(f"Point {k}: {m.get('analysis', 'checked')}\n[[{k}: {m['coverage']}]]"
                         for k, m in enumerate(value["marks"], start=1))
    raise AssertionError(step)
