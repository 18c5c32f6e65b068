"""LongReward as a verl custom reward function.

verl loads this file by path (``custom_reward_function.path``) and calls the function named
by ``custom_reward_function.name`` once per sample::

    custom_reward_function.path=$(python -c "import longreward.serve.verl as m; print(m.__file__)")
    custom_reward_function.name=compute_score_async      # verl's reward loop; or compute_score
    +custom_reward_function.reward_kwargs.config=/abs/path/serve.yaml   # or .url=http://HOST:PORT

The sample's ``reward_model.ground_truth`` is the id of a registered prompt (document and
question; ``prompts:`` in serve.yaml), or an object with ``prompt_id`` (and optionally
``query``/``context``); ``extra_info`` may carry ``query`` or ``context`` too.

verl needs a number for every sample, so ``fallback_reward`` must be set in the serve config:
a sample the judge could not score gets it, with ``longreward_mask`` 0 in the extra info
verl logs, and the service logs and counts each use. Imports are absolute because verl loads
the file outside its package.
"""

from __future__ import annotations

from typing import Any

from longreward.errors import UsageError
from longreward.serve._backends import Rewards, rewards_for
from longreward.serve._protocols import label_fields
from longreward.serve._service import ItemResult, ScoreItem

__all__ = ["compute_score", "compute_score_async"]


def _backend(config: Any, url: Any) -> Rewards:
    rewards = rewards_for(config, url)
    if rewards.fallback_reward is None:
        raise UsageError("verl needs a number for every sample, and LongReward gives none for "
                         "a sample the judge could not score. Fix: set fallback_reward (e.g. "
                         "0.0) in the serve config; each use is logged, counted and marked "
                         "with longreward_mask=0")
    return rewards


def _item(solution_str: str, ground_truth: Any, extra_info: Any) -> ScoreItem:
    fields = label_fields(ground_truth)
    if isinstance(extra_info, dict):
        if fields.get("prompt_id") is None and extra_info.get("prompt_id") is not None:
            fields["prompt_id"] = str(extra_info["prompt_id"])
        for k in ("query", "context"):
            if isinstance(extra_info.get(k), str) and k not in fields:
                fields[k] = extra_info[k]
    if not fields.get("prompt_id") and "context" not in fields and "error" not in fields:
        fields["error"] = ("reward_model.ground_truth names no registered prompt; set it to "
                           "the prompt id")
    return ScoreItem(response=solution_str, **fields)


def _result(r: ItemResult) -> dict[str, Any]:
    if r.reward is None:  # the fallback is required above; never turn a failure into 0.0
        raise UsageError(f"sample {r.id} has no reward ({r.reason}) and no fallback_reward")
    # verl puts every key but "score" in its reward_extra_info and averages them: numbers only.
    return {"score": float(r.reward),
            "longreward_mask": float(r.mask), "longreward_fallback": float(r.fallback)}


def compute_score(data_source: Any, solution_str: str, ground_truth: Any,
                  extra_info: Any = None, *, config: Any = None, url: Any = None,
                  **kwargs: Any) -> dict[str, float]:
    """verl's synchronous reward function signature (thread-pool reward managers)."""
    results = _backend(config, url).score([_item(solution_str, ground_truth, extra_info)])
    return _result(results[0])


async def compute_score_async(data_source: Any, solution_str: str, ground_truth: Any,
                              extra_info: Any = None, *, config: Any = None, url: Any = None,
                              **kwargs: Any) -> dict[str, float]:
    """verl's asynchronous reward function signature (the reward loop)."""
    results = await _backend(config, url).ascore([_item(solution_str, ground_truth,
                                                        extra_info)])
    return _result(results[0])
