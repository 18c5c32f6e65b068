"""The LongReward dimensions, each in its own module with its prompts in ``prompts/``.

Every public module of this package is a dimension that registers itself (``_registry``);
importing the package imports them all, so a new dimension is one new module and its prompts.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._base import (
    DimensionResult,
    JudgeSettings,
    ask_judge,
    judge_score,
    lower_of,
    request_nonce,
    usage_dict,
)
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


#: what an unscored dimension does to the reward (``ScoreOptions.unscored_dimension``)
UNSCORED_RULES = ("no_reward", "mean_of_scored")


def combine_reward(results: dict[str, DimensionResult],
                   weights: dict[str, float] | None = None, *,
                   unscored: str = "no_reward") -> tuple[float | None, list[str]]:
    """The reward and the dimensions that went into it: the weighted mean (equal weights by
    default) over **every** dimension with a weight, or None when one of them has no score.

    The paper averages the four scores; its reference code sums them (0–40). A dimension the
    answer made unreadable already holds its minimum (``DimensionResult.at_minimum``), so
    what is left unscored here is the judge's failure (an outage, the deadline) or a bug:
    the reward is then unknown, not a mean over fewer dimensions — such a mean lets an answer
    drop its weakest dimension by making that verdict fail. ``unscored="mean_of_scored"`` is
    the opt-in for the mean over the dimensions that were scored (each row lists them): it
    keeps answers usable through a judge outage, at the price of rewards that are not all on
    the same dimensions (``pairs`` compares only answers scored on the same ones)."""
    if unscored not in UNSCORED_RULES:
        raise ValueError(f"unscored must be one of {UNSCORED_RULES}, not {unscored!r}")
    weighed = [n for n in results if weights is None or weights.get(n, 0.0) > 0]
    used = [n for n in weighed if results[n].score is not None]
    if not used or (unscored == "no_reward" and len(used) < len(weighed)):
        return None, []
    w = {n: (1.0 if weights is None else weights[n]) for n in used}
    total = sum(w.values())
    reward = sum(w[n] * float(results[n].score) for n in used) / total  # type: ignore[arg-type]
    return reward, used


__all__ = [
    "request_nonce",
    "DIMENSIONS", "Dimension", "DimensionInput", "DimensionResult", "DocumentWork", "JudgeSettings", "MissingVariablesError",
    "PromptTemplate", "PromptWork", "UNSCORED_RULES", "combine_reward", "extract_points", "faithfulness_score",
    "load_prompt", "lower_of", "score_completeness", "score_faithfulness", "score_helpfulness",
    "registered", "score_logicality",
    # the judge-call helpers the dimensions share, for other judged scores (eval's baselines)
    "ask_judge", "judge_score", "parse_choice", "parse_score", "usage_dict",
]
