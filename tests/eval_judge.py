"""A judge whose verdicts the eval tests control, for the judge double's ``responder``.

Requests are routed by the reply schema's name (``response_format.json_schema.name``), which
each judge step sets explicitly; the verdict is read from markers the test writes into each
answer: ``H=`` helpfulness, ``L=`` logicality, ``C=`` completeness coverage, ``O=`` the holistic
baseline, ``P=`` the pairwise baseline, ``R=`` the reference grade (6 without one). ``J=x`` makes helpfulness noisy when the request carries a
seed (a rescoring at T > 0): it moves by x·(seed mod 3 − 1), so seeds 1, 2, 3 give −x, 0, +x.
Faithfulness statements are the answer's sentences that start with "Fact"; a statement with
"true" in it is fully supported, with "half" partially, otherwise not. So the expected accuracy of every method is
known before the run.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

_MARK = r"\b{}=(\d+(?:\.\d+)?)\b"


def schema_name(body: dict[str, Any]) -> str | None:
    fmt = body.get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("name")


def block(text: str, tag: str) -> str:
    """The content of ``<tag>`` (or of a fenced ``<tag_CODE>``, the form candidate texts take
    when the prompt fences them as data)."""
    m = re.search(rf"<{tag}(?:_[A-Za-z0-9]+)?>\s*(.*?)\s*</{tag}(?:_[A-Za-z0-9]+)?>", text,
                  flags=re.S)
    return m.group(1) if m else ""


def mark(text: str, key: str) -> float | None:
    m = re.search(_MARK.format(key), text)
    return float(m.group(1)) if m else None


class EvalJudge:
    """``responder``; ``asked`` counts requests per schema name."""

    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()
        self.systems: dict[str, list[str]] = {}

    def __call__(self, body: dict[str, Any]) -> str | None:
        name = schema_name(body)
        if name is None:
            return None
        self.asked[name] += 1
        self.systems.setdefault(name, []).append(body["messages"][0]["content"])
        user = body["messages"][-1]["content"]
        answer = block(user, "answer")
        if name == "ScoredReply":
            score = mark(answer, "H")
            jitter = mark(answer, "J")
            if jitter is not None and score is not None and body.get("seed") is not None:
                score += jitter * (body["seed"] % 3 - 1)
            return json.dumps({"analysis": "helpful enough", "score": score})
        if name == "LogicReply":
            return json.dumps({"errors": [], "analysis": "consistent",
                               "score": mark(answer, "L")})
        if name == "StatementsReply":
            return json.dumps({"statements": re.findall(r"(Fact [^.]*\.)", answer)})
        if name == "GradeReply":
            st = block(user, "statement_to_check")
            support = "fully" if "true" in st else "partially" if "half" in st else "not"
            return json.dumps({"analysis": f"checked: {support}", "support": support})
        if name == "ExtractionReply":
            return json.dumps({"relevant": True, "points": ["the key point"]})
        if name == "CoverageReply":
            return json.dumps({"analysis": "covers it", "score": mark(answer, "C")})
        if name == "HolisticReply":
            score = mark(answer, "O")
            return "I cannot tell." if score is None else json.dumps(
                {"analysis": "overall", "score": score})
        if name == "PairwiseReply":
            pa, pb = mark(block(user, "answer_a"), "P"), mark(block(user, "answer_b"), "P")
            if pa is None or pb is None:
                winner = "A"  # a judge with position bias: it contradicts itself when swapped
            else:
                winner = "A" if pa > pb else "B" if pb > pa else "tie"
            return json.dumps({"analysis": "compared", "winner": winner})
        if name == "ReferenceReply":
            grade = mark(answer, "R")  # no marker (a generated answer): 6
            return json.dumps({"analysis": "against the reference",
                               "score": 6 if grade is None else grade})
        return None
