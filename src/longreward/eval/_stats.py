"""Agreement arithmetic: verdicts, the tie rule, accuracy and its bootstrap interval.

Pure functions over plain lists, so the numbers can be checked by hand.

- A *verdict* is which answer of a pair a method prefers: ``"a"``, ``"b"``, ``"tie"`` (the
  method scores both the same, or a pairwise judge contradicts itself), or ``None`` (the method
  has no opinion: an answer was left unscored, a judge call failed).
- The **tie rule** says what a tie or an abstention is worth against a human label:
  ``half`` (default) gives 0.5, the expected accuracy of breaking it by a coin flip; ``wrong``
  gives 0; ``skip`` leaves the pair out of that method's count. Pairs that the *humans* labelled
  a tie are never counted: no method can agree with them by picking a side.
- The **interval** is a percentile bootstrap over prompts (a cluster bootstrap): pairs formed
  from one prompt's answers share a document and answers, so resampling single pairs would
  understate the uncertainty. The resampled prompts are the same for every method (one seeded
  draw), so intervals are reproducible and comparable between methods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["a", "b", "tie"] | None
TieRule = Literal["half", "wrong", "skip"]

TIE_RULES: dict[str, str] = {
    "half": "a tie or no verdict counts 0.5 (a coin flip); human ties are left out",
    "wrong": "a tie or no verdict counts as wrong; human ties are left out",
    "skip": "pairs where the method ties or has no verdict are left out of its count; "
            "human ties are left out",
}

#: scores closer than this are a tie (stored scores are decimals, 7.0 vs 7.000000001)
TIE_TOLERANCE = 1e-9


def verdict_from_scores(score_a: float | None, score_b: float | None) -> Verdict:
    """The higher score wins; equal scores tie; a missing score gives no verdict."""
    if score_a is None or score_b is None:
        return None
    if abs(score_a - score_b) <= TIE_TOLERANCE:
        return "tie"
    return "a" if score_a > score_b else "b"


def credit(verdict: Verdict, label: str, rule: TieRule) -> float | None:
    """What one verdict is worth against a human label "a"/"b" (None: not counted)."""
    if verdict in ("a", "b"):
        return 1.0 if verdict == label else 0.0
    if rule == "skip":
        return None
    return 0.5 if rule == "half" else 0.0


@dataclass
class Accuracy:
    """One method's agreement with the human labels."""

    name: str
    accuracy: float | None
    low: float | None
    high: float | None
    #: pairs counted (after the tie rule)
    n: int
    agree: int
    disagree: int
    ties: int
    #: pairs where the method had no verdict (unscored answer, failed judge call)
    abstained: int

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "accuracy": self.accuracy, "ci": [self.low, self.high],
                "n": self.n, "agree": self.agree, "disagree": self.disagree,
                "ties": self.ties, "abstained": self.abstained}


class Bootstrap:
    """One seeded draw of prompt resamples, applied to every method."""

    def __init__(self, clusters: Sequence[str], *, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> None:
        import numpy as np

        self.level = level
        self.resamples = resamples
        names = list(dict.fromkeys(clusters))
        index = {c: i for i, c in enumerate(names)}
        self._cluster_of = np.array([index[c] for c in clusters], dtype=np.int64)
        self._n_clusters = len(names)
        rng = np.random.default_rng(seed)
        self._draws = (rng.integers(0, len(names), size=(resamples, len(names)))
                       if names and resamples > 0 else None)

    def interval(self, credits: Sequence[float | None]) -> tuple[float | None, float | None]:
        """Percentile interval of the accuracy over prompt resamples (None, None when no
        pair counts or no resampling was asked for)."""
        import numpy as np

        if self._draws is None:
            return None, None
        values = np.array([np.nan if c is None else c for c in credits], dtype=float)
        counted = ~np.isnan(values)
        if not counted.any():
            return None, None
        sums = np.bincount(self._cluster_of[counted], weights=values[counted],
                           minlength=self._n_clusters)
        counts = np.bincount(self._cluster_of[counted], minlength=self._n_clusters)
        s = sums[self._draws].sum(axis=1)
        n = counts[self._draws].sum(axis=1)
        ok = n > 0  # a resample may draw only prompts where this method counts nothing
        acc = s[ok] / n[ok]
        tail = (1.0 - self.level) / 2 * 100
        low, high = np.percentile(acc, [tail, 100 - tail])
        return float(low), float(high)


def accuracy(name: str, verdicts: Sequence[Verdict], labels: Sequence[str], rule: TieRule,
             bootstrap: Bootstrap) -> Accuracy:
    """Accuracy of ``verdicts`` against human ``labels`` ("a"/"b"; pairs the humans tied are
    dropped by the caller) under ``rule``, with the bootstrap interval."""
    credits = [credit(v, lab, rule) for v, lab in zip(verdicts, labels, strict=True)]
    counted = [c for c in credits if c is not None]
    low, high = bootstrap.interval(credits)
    return Accuracy(
        name=name,
        accuracy=(sum(counted) / len(counted)) if counted else None,
        low=low, high=high, n=len(counted),
        agree=sum(1 for v, lab in zip(verdicts, labels, strict=True) if v == lab),
        disagree=sum(1 for v, lab in zip(verdicts, labels, strict=True)
                     if v in ("a", "b") and v != lab),
        ties=sum(1 for v in verdicts if v == "tie"),
        abstained=sum(1 for v in verdicts if v is None),
    )


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's r of two equally long lists (None below 3 points or when one is constant)."""
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / math.sqrt(sxx * syy)


def ranks(xs: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank (as Spearman's rho needs)."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson's r of the ranks (robust to a reward's odd scale)."""
    return pearson(ranks(xs), ranks(ys))
