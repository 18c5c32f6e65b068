"""``longreward eval facts``: FactScore-style counts from scored answers, with no new calls.

The LongReward paper reports, for Llama-3.1-8B before and after DPO, the number of atomic
facts per answer (21.76 → 32.86) and the share supported (91.94 → 92.85, FactScore). The
faithfulness dimension already splits each answer into factual statements and grades each one
fully / partially / not supported against retrieved evidence, so the same figures are counts
over ``details.faithfulness`` of the scored rows:

- ``statements_per_answer``: mean statements over answers whose faithfulness was scored, the
  answers with no statement counted as 0 (they are also counted on their own);
- ``fully`` / ``partially`` / ``not``: shares of all statements (pooled);
- ``factscore``: the mean, over answers with at least one statement, of the share of their
  statements fully supported — FactScore's own per-answer average, where an answer with no
  fact abstains. Partial support counts as unsupported here, as FactScore's binary labels do.

Departure from FactScore: statements are the judge's sentence-level factual statements, not
atomic facts, and support is judged against the top-k retrieved chunks of the document, not
Wikipedia; compare numbers made with the same judge and settings only.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..io.files import read_rows

NONE_GROUP = "(none)"
#: the numbers shown and compared, in display order: (label, key, format)
FACT_ROWS: tuple[tuple[str, str, str], ...] = (
    ("answers", "answers", "{:d}"),
    ("faithfulness scored", "faithfulness_scored", "{:d}"),
    ("answers with no statement", "no_statements", "{:d}"),
    ("statements per answer", "statements_per_answer", "{:.2f}"),
    ("% fully supported", "fully", "{:.2f}"),
    ("% partially supported", "partially", "{:.2f}"),
    ("% not supported", "not", "{:.2f}"),
    ("FactScore-style % (per answer)", "factscore", "{:.2f}"),
    ("faithfulness mean", "faithfulness_mean", "{:.2f}"),
)
METRICS: tuple[str, ...] = tuple(key for _, key, _ in FACT_ROWS)


def group_value(row: dict[str, Any], by: str | None) -> str:
    """The row's value of ``by`` (a top-level field, else one in ``meta``)."""
    if by is None:
        return "all"
    value = row.get(by)
    if value is None:
        value = (row.get("meta") or {}).get(by)
    return NONE_GROUP if value is None else str(value)


def fact_stats(rows: Iterable[dict[str, Any]], by: str | None = None) -> dict[str, dict[str, Any]]:
    """Counts per group of ``by`` (one group "all" without it), in order of first appearance."""
    acc: dict[str, dict[str, Any]] = {}
    for row in rows:
        g = acc.setdefault(group_value(row, by), {
            "answers": 0, "faithfulness_scored": 0, "faithfulness_unscored": 0,
            "no_statements": 0, "statements": 0, "counts": {"fully": 0, "partially": 0, "not": 0},
            "_support_shares": [], "_scores": []})
        g["answers"] += 1
        score = (row.get("scores") or {}).get("faithfulness")
        details = (row.get("details") or {}).get("faithfulness") or {}
        if score is None:
            g["faithfulness_unscored"] += 1
            continue
        g["faithfulness_scored"] += 1
        g["_scores"].append(float(score))
        supports = [s.get("support") for s in details.get("statements") or []]
        n = int(details.get("n_statements", len(supports)))
        g["statements"] += n
        if n == 0:
            g["no_statements"] += 1
            continue
        for s in supports:
            if s in g["counts"]:
                g["counts"][s] += 1
        g["_support_shares"].append(supports.count("fully") / len(supports) if supports else 0.0)
    out: dict[str, dict[str, Any]] = {}
    for name, g in acc.items():
        graded = sum(g["counts"].values())
        shares, scores = g.pop("_support_shares"), g.pop("_scores")
        scored = g["faithfulness_scored"]
        out[name] = {
            **g,
            "statements_per_answer": g["statements"] / scored if scored else None,
            **{k: (100.0 * v / graded if graded else None) for k, v in g["counts"].items()},
            "factscore": 100.0 * sum(shares) / len(shares) if shares else None,
            "faithfulness_mean": sum(scores) / len(scores) if scores else None,
        }
    return out


def facts_of_file(path: str | Path, by: str | None = None) -> dict[str, dict[str, Any]]:
    rows, _ = read_rows(path)
    return fact_stats(rows, by)


def compare_facts(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
                  ) -> dict[str, dict[str, float | None]]:
    """``after − before`` for every metric of every group present in both."""
    out: dict[str, dict[str, float | None]] = {}
    for group in before:
        if group not in after:
            continue
        out[group] = {}
        for m in METRICS:
            a, b = before[group].get(m), after[group].get(m)
            out[group][m] = None if a is None or b is None else b - a
    return out
