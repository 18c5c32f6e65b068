"""LongReward as a verl custom reward function.

verl loads the function named ``name`` from ``path`` and calls it with keyword arguments
(``reward_kwargs`` merged in)::

    reward.custom_reward_function.path=pkg://longreward.serve.verl   # verl 0.9; or this file's path
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.config=/abs/path/serve.yaml  # or .url=http://HOST:PORT

(verl before 0.9 spells the keys ``custom_reward_function.*`` and takes only a file path.)

- ``compute_score``: one sample (``data_source``, ``solution_str``, ``ground_truth``,
  ``extra_info``), as the reward-loop managers of verl 0.9's registry call it (``naive``, the
  default, ``dapo``, ``gdpo``, ``rate_limited`` from their event loop's thread pool;
  ``remote`` in a Ray worker) and the legacy ``naive``/``dapo`` managers; or a whole batch
  (``data_sources``, ``solution_strs``, ``ground_truths``, ``extra_infos``: lists in, a list
  out), as the legacy ``batch`` manager calls it. Returns ``{"score": float,
  "longreward_mask": 0/1, "longreward_fallback": 0/1}`` per sample; verl keeps the extra keys
  in its reward extra info.
- ``compute_score_async``: one sample, awaited on the reward loop's event loop.
- ``compute_score_float``: one sample, a bare float: for the legacy ``prime`` manager, which
  calls it positionally in a process pool and reads ``float(result)``.

The sample's ``reward_model.ground_truth`` is the id of a registered prompt (document and
question; ``prompts:`` in serve.yaml), or an object with ``prompt_id`` (and optionally
``query``/``context``); ``extra_info`` may carry ``query`` or ``context`` too.

verl needs a number for every sample. One that cannot be scored gets the neutral reward of
its prompt (``serve._neutral``; ``fallback_reward`` in the serve config fixes a number
instead), with ``longreward_mask`` 0, a log line and a count, and never an exception: verl
turns one into a failed batch (``batch``), a 0.0 for the sample (``prime``,
``rate_limited``) or a crashed step (``naive``). Scoring stops at ``deadlines.verl`` (240 s),
below ``rate_limited``'s and ``prime``'s 300 s.

verl runs these in many processes at once (8 reward-loop workers by default, ``remote``'s Ray
workers, ``prime``'s pool): each scores in-process, all share the serve config's run
directory — its judge-call cache, the calls in flight, the judged rewards — with no lock
error. Imports are absolute because verl may load the file outside its package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from longreward.serve._backends import Rewards, rewards_for
from longreward.serve._protocols import label_fields
from longreward.serve._service import ItemResult, ScoreItem

__all__ = ["compute_score", "compute_score_async", "compute_score_float"]


def _item(solution_str: Any, ground_truth: Any, extra_info: Any) -> ScoreItem:
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
    if not isinstance(solution_str, str):
        fields["error"] = f"solution_str must be text, got {type(solution_str).__name__}"
        solution_str = ""
    return ScoreItem(response=solution_str, **fields)


def _result(r: ItemResult) -> dict[str, float]:
    # The service filled a failed sample (neutral or fixed); a missing number is a bug.
    assert r.reward is not None, f"sample {r.id} has no reward ({r.reason})"
    # verl puts every key but "score" in its reward_extra_info and averages them: numbers only.
    return {"score": float(r.reward),
            "longreward_mask": float(r.mask), "longreward_fallback": float(r.fallback)}


def _score(rewards: Rewards, items: list[ScoreItem]) -> list[ItemResult]:
    return rewards.score(items, fill="neutral", timeout=rewards.deadlines.get("verl"))


def compute_score(data_source: Any = None, solution_str: Any = None, ground_truth: Any = None,
                  extra_info: Any = None, *, data_sources: Sequence[Any] | None = None,
                  solution_strs: Sequence[Any] | None = None,
                  ground_truths: Sequence[Any] | None = None,
                  extra_infos: Sequence[Any] | None = None, config: Any = None, url: Any = None,
                  **kwargs: Any) -> dict[str, float] | list[dict[str, float]]:
    """One sample's reward, or with ``solution_strs`` a batch's (module doc)."""
    rewards = rewards_for(config, url)
    if solution_strs is not None:
        n = len(solution_strs)
        truths = list(ground_truths) if ground_truths is not None else [None] * n
        extras = list(extra_infos) if extra_infos is not None else [None] * n
        items = [_item(s, g, e) for s, g, e in zip(solution_strs, truths, extras, strict=True)]
        return [_result(r) for r in _score(rewards, items)]
    return _result(_score(rewards, [_item(solution_str, ground_truth, extra_info)])[0])


async def compute_score_async(data_source: Any = None, solution_str: Any = None,
                              ground_truth: Any = None, extra_info: Any = None, *,
                              config: Any = None, url: Any = None,
                              **kwargs: Any) -> dict[str, float]:
    """One sample's reward, awaited (verl's reward loop)."""
    rewards = rewards_for(config, url)
    results = await rewards.ascore([_item(solution_str, ground_truth, extra_info)],
                                   fill="neutral", timeout=rewards.deadlines.get("verl"))
    return _result(results[0])


def compute_score_float(data_source: Any = None, solution_str: Any = None,
                        ground_truth: Any = None, extra_info: Any = None, *,
                        config: Any = None, url: Any = None, **kwargs: Any) -> float:
    """One sample's reward as a bare float (verl's ``prime`` manager)."""
    out = compute_score(data_source, solution_str, ground_truth, extra_info, config=config,
                        url=url)
    assert isinstance(out, dict)
    return out["score"]


if __name__ != "longreward.serve.verl":
    # verl loaded this file by path, as a module nobody can import by name. Hand out the
    # functions of the importable module instead, so that pickle (prime's process pool, a
    # Ray worker) finds them by reference in the process that runs them.
    from longreward.serve import verl as _importable

    compute_score = _importable.compute_score  # type: ignore[assignment]
    compute_score_async = _importable.compute_score_async  # type: ignore[assignment]
    compute_score_float = _importable.compute_score_float  # type: ignore[assignment]
