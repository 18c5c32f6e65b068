"""What the eval commands share: the per-method accounting and writing a result file. (The run
store as the judge's call cache is ``store.cached_calls``, which listwise pair selection uses
too; the slowest calls come from the judge client's own snapshot.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io.files import dumps

#: where eval prompts live (``prompts/`` beside these modules), for ``load_prompt(package=)``
PROMPTS_PACKAGE = "longreward.eval"


_COUNTERS = ("requests", "cache_hits", "prompt_tokens", "completion_tokens", "cached_tokens",
             "unscored")


def counters(*groups: dict[str, int]) -> dict[str, int]:
    """The accounting counters summed over ``groups``, plus ``calls`` = requests + cache
    hits: what a method costs on a fresh run, whatever this run found in the cache."""
    out = {k: sum(int(g.get(k, 0)) for g in groups) for k in _COUNTERS}
    out["calls"] = out["requests"] + out["cache_hits"]
    return out


def tag_costs(by_tag: dict[str, dict[str, int]], tags: list[str]) -> dict[str, int]:
    """``counters`` over the client's per-tag counters of ``tags``."""
    return counters(*(by_tag[t] for t in tags if t in by_tag))


def write_result(path: str | Path, result: dict[str, Any]) -> None:
    """Write a result JSON file atomically (a reader never sees half of it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(result) + "\n", encoding="utf-8")
    tmp.replace(path)
