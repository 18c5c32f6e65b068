"""What the eval commands share: the run store as the judge's call cache (so a rerun repeats no
call), the slowest calls of a run, the per-method accounting, and writing a result file."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..io.files import dumps
from ..judge import ModelClient
from ..store import RunLock, RunStore

#: where eval prompts live (``prompts/`` beside these modules), for ``load_prompt(package=)``
PROMPTS_PACKAGE = "longreward.eval"


@contextmanager
def cached_calls(client: ModelClient, run_dir: str | Path) -> Iterator[RunStore]:
    """Hold the run directory's lock and use its store as ``client``'s call cache, so the
    calls made inside come back from the store on a rerun. A client that already has a cache
    keeps it."""
    with RunLock(Path(run_dir)), RunStore(Path(run_dir)) as store:
        attached = client.cache is None
        if attached:
            client.cache = store
        try:
            yield store
        finally:
            if attached:
                client.cache = None


class CallTimes:
    """The slowest judge calls that reached a model (cache hits are not calls). Each time is
    the wall time of ``ModelClient.generate``: waiting for a free connection, the request and
    its retries included, which is what a user waits for.

    The client does not time calls itself, so this wraps the client's ``generate`` for the
    duration of an eval run (``ModelClient.ask`` and the dimensions call it by attribute)."""

    def __init__(self, keep: int = 20) -> None:
        self.keep = keep
        self._heap: list[tuple[float, int, dict[str, Any]]] = []
        self._n = itertools.count()

    def attach(self, client: ModelClient) -> None:
        if getattr(client, "_eval_call_times", None) is self:
            return
        inner = client.generate

        async def generate(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = await inner(*args, **kwargs)
            if not out.cached:
                self.add(time.perf_counter() - start, kwargs.get("tag", ""), out.usage,
                         attempt=kwargs.get("attempt", 0))
            return out

        client.generate = generate  # type: ignore[method-assign]
        client._eval_call_times = self  # type: ignore[attr-defined]

    def add(self, seconds: float, tag: str, usage: Any, *, attempt: int = 0) -> None:
        item = {"seconds": round(seconds, 4), "tag": tag, "attempt": attempt,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens}
        entry = (seconds, next(self._n), item)
        if len(self._heap) < self.keep:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heappushpop(self._heap, entry)

    def slowest(self) -> list[dict[str, Any]]:
        return [item for _, _, item in sorted(self._heap, key=lambda e: -e[0])]


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
