"""LongReward as a TRL ``GRPOTrainer`` reward function::

    from longreward.serve.trl import longreward_reward
    trainer = GRPOTrainer(model=..., reward_funcs=[longreward_reward(config="serve.yaml")],
                          train_dataset=dataset, ...)

TRL calls the function with ``prompts``, ``completions`` and every dataset column as lists.
The column ``prompt_id`` names a registered prompt (document and question; ``prompts:`` in
serve.yaml), or columns ``context`` and ``query`` carry them inline. The function returns one
float per completion, or ``None`` for one the judge could not score: TRL treats ``None`` as
"no reward from this function" (NaN) and warns when no function gave one, so a failure is
never a silent number. With ``fallback_reward`` in the serve config, that value is returned
instead, logged and counted. When TRL passes ``log_metric``/``log_extra``, the fraction of
masked completions and each completion's reason are logged with its metrics.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from longreward.serve._backends import Rewards, rewards_for
from longreward.serve._service import ScoreItem

__all__ = ["completion_text", "longreward_reward"]


def completion_text(completion: Any) -> str:
    """A completion as text: a string, or a conversation's assistant messages."""
    if isinstance(completion, str):
        return completion
    parts: list[str] = []
    for message in completion if isinstance(completion, list) else [completion]:
        if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content
                         if isinstance(p, dict) and p.get("type") == "text")
    return "\n".join(parts)


def _column(kwargs: dict[str, Any], name: str, i: int) -> Any:
    values = kwargs.get(name)
    return values[i] if isinstance(values, list) and i < len(values) else None


def longreward_reward(config: str | os.PathLike[str] | None = None, *, url: str | None = None,
                      rewards: Rewards | None = None, prompt_id_column: str = "prompt_id",
                      name: str = "longreward"
                      ) -> Callable[..., Awaitable[list[float | None]]]:
    """An async reward function for ``GRPOTrainer(reward_funcs=[...])``, scoring in this
    process (``config``: a serve.yaml) or on a running server (``url``). TRL runs async
    reward functions concurrently on its own event loop; ``name`` is how TRL logs it."""
    backend = rewards or rewards_for(config, url)

    async def reward(prompts: list[Any], completions: list[Any],
                     **kwargs: Any) -> list[float | None]:
        items = []
        for i, completion in enumerate(completions):
            pid = _column(kwargs, prompt_id_column, i)
            item = ScoreItem(response=completion_text(completion), id=str(i),
                             prompt_id=str(pid) if pid is not None else None,
                             context=_column(kwargs, "context", i),
                             query=_column(kwargs, "query", i))
            if item.prompt_id is None and item.context is None:
                item.error = (f"the dataset has no '{prompt_id_column}' column (or context and "
                              "query columns) naming the document")
            items.append(item)
        results = await backend.ascore(items)
        log_metric, log_extra = kwargs.get("log_metric"), kwargs.get("log_extra")
        if callable(log_metric) and results:
            log_metric(f"{name}/masked", sum(1 - r.mask for r in results) / len(results))
            log_metric(f"{name}/fallback", sum(r.fallback for r in results) / len(results))
        if callable(log_extra):
            log_extra(f"{name}_reason", [r.reason or "" for r in results])
        return [r.reward for r in results]

    reward.__name__ = reward.__qualname__ = name
    return reward
