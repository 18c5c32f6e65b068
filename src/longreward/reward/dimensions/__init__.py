"""The LongReward dimensions, each in its own module with its prompts in ``prompts/``.

Every public module of this package is a dimension that registers itself (``_registry``);
importing the package imports them all, so a new dimension is one new module and its prompts.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._base import DimensionResult, JudgeSettings, ask_judge, judge_score, usage_dict
from ._parse import parse_choice, parse_score
from ._prompts import MissingVariablesError, PromptTemplate, load_prompt
from ._registry import Dimension, DimensionInput, registered
from ._shared import DocumentWork, PromptWork
from .completeness import extract_points, score_completeness
from .faithfulness import faithfulness_score, score_faithfulness
from .helpfulness import score_helpfulness
from .logicality import score_logicality

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

#: the registered dimensions, in the paper's order
DIMENSIONS: tuple[str, ...] = tuple(registered())


def combine_reward(results: dict[str, DimensionResult],
                   weights: dict[str, float] | None = None) -> tuple[float | None, list[str]]:
    """Weighted mean of the scored dimensions (equal weights by default) and the names that
    went in. The paper averages the four scores; its reference code sums them (0–40), which
    ranks answers the same way only when every answer has all four — a mean over the
    dimensions actually scored keeps rewards comparable, and each row records which ones."""
    used = [n for n, r in results.items() if r.score is not None and
            (weights is None or weights.get(n, 0.0) > 0)]
    if not used:
        return None, []
    w = {n: (1.0 if weights is None else weights[n]) for n in used}
    total = sum(w.values())
    reward = sum(w[n] * float(results[n].score) for n in used) / total  # type: ignore[arg-type]
    return reward, used


__all__ = [
    "DIMENSIONS", "Dimension", "DimensionInput", "DimensionResult", "DocumentWork", "JudgeSettings", "MissingVariablesError",
    "PromptTemplate", "PromptWork", "combine_reward", "extract_points", "faithfulness_score",
    "load_prompt", "score_completeness", "score_faithfulness", "score_helpfulness",
    "registered", "score_logicality",
    # the judge-call helpers the dimensions share, for other judged scores (eval's baselines)
    "ask_judge", "judge_score", "parse_choice", "parse_score", "usage_dict",
]
