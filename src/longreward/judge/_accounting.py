"""Usage accounting: prices, per-tag counters and the snapshot progress bars read.

Counters are only touched from the client's event loop, so they need no lock; a progress
thread that reads a snapshot may see a count one call old, never a torn one.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ._types import Message, Usage


class Price(BaseModel):
    """USD per million tokens. ``cached_input_per_mtok`` defaults to the input price.
    ``batch_discount``: the fraction batch requests cost less (OpenAI's Batch API: 0.5)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    batch_discount: float | None = Field(default=None, ge=0, le=1)

    def for_batch(self) -> Price:
        """The prices of a batch request: every rate less ``batch_discount`` (unchanged
        when no discount is configured)."""
        keep = 1.0 - (self.batch_discount or 0.0)
        cached = self.cached_input_per_mtok
        return Price(input_per_mtok=self.input_per_mtok * keep,
                     output_per_mtok=self.output_per_mtok * keep,
                     cached_input_per_mtok=None if cached is None else cached * keep)

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_rate = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else self.cached_input_per_mtok
        )
        return (
            (usage.prompt_tokens - cached) * self.input_per_mtok
            + cached * cached_rate
            + usage.completion_tokens * self.output_per_mtok
        ) / 1e6


@dataclass
class TagStats:
    """Counters for one tag (e.g. "faithfulness") or for the whole client."""

    requests: int = 0  # requests sent to an endpoint (each retry is one more)
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0  # generate() calls that ended in an error
    asks: int = 0
    unscored: int = 0  # asks that ended with value=None
    unparsable: int = 0  # replies that could not be parsed (each re-ask counts)
    #: asks whose verdict carried the request's nonce / was read by the fallback rules
    nonce_verdicts: int = 0
    fallback_verdicts: int = 0
    #: asks that ended with no value because of the judged answer's text (ambiguity it made,
    #: a refusal it provoked): the dimension scores its minimum, not null
    answer_caused: int = 0
    #: replies set aside as copies of the judged text (``copied_reply``), each re-asked
    copied: int = 0
    #: replies cut by the token budget before their verdict, each re-asked with a larger one
    cut: int = 0
    usage: Usage = field(default_factory=Usage)

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "failures": self.failures,
            "asks": self.asks,
            "unscored": self.unscored,
            "unparsable": self.unparsable,
            "nonce_verdicts": self.nonce_verdicts,
            "fallback_verdicts": self.fallback_verdicts,
            "answer_caused": self.answer_caused,
            "copied": self.copied,
            "cut": self.cut,
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "cached_tokens": self.usage.cached_tokens,
        }


class SlowestCalls:
    """The slowest model calls (cache hits are not calls), for reports. Each time is the
    wall time of one call to the model: waiting for the limiters and a free connection, the
    request and its retries, which is what a user waits for."""

    def __init__(self, keep: int = 20) -> None:
        self.keep = keep
        self._heap: list[tuple[float, int, dict[str, Any]]] = []
        self._n = itertools.count()

    def add(self, seconds: float, tag: str, usage: Usage, *, attempt: int = 0) -> None:
        item = {"seconds": round(seconds, 4), "tag": tag, "attempt": attempt,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens}
        entry = (seconds, next(self._n), item)
        if len(self._heap) < self.keep:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heappushpop(self._heap, entry)

    def items(self) -> list[dict[str, Any]]:
        """Slowest first."""
        return [dict(item) for _, _, item in sorted(self._heap, key=lambda e: -e[0])]


class ClientStats:
    """Totals and per-tag counters, plus what the progress display should say about the
    endpoints (``notices``: an endpoint that is down, a long ``Retry-After`` wait) and the
    slowest calls."""

    def __init__(self) -> None:
        self.total = TagStats()
        self.by_tag: dict[str, TagStats] = {}
        self.in_flight = 0
        #: short human-readable lines about the endpoints' health, newest last
        self.notices: dict[str, str] = {}
        self.slowest = SlowestCalls()

    def tag(self, tag: str) -> TagStats:
        stats = self.by_tag.get(tag)
        if stats is None:
            stats = self.by_tag[tag] = TagStats()
        return stats

    def _bump(self, tag: str, name: str, n: int = 1) -> None:
        for stats in (self.total, self.tag(tag)):
            setattr(stats, name, getattr(stats, name) + n)

    def _add_usage(self, tag: str, usage: Usage) -> None:
        for stats in (self.total, self.tag(tag)):
            stats.usage = stats.usage + usage

    def notice(self, key: str, text: str | None) -> None:
        """Set (or with ``None`` clear) the notice ``key`` (one per endpoint and kind)."""
        if text is None:
            self.notices.pop(key, None)
        else:
            self.notices[key] = text

    def snapshot(self, price: Price | None = None) -> dict[str, Any]:
        """A plain dict for progress bars and logs."""
        out: dict[str, Any] = self.total.as_dict()
        out["in_flight"] = self.in_flight
        out["cost_usd"] = price.cost(self.total.usage) if price else None
        out["by_tag"] = {name: s.as_dict() for name, s in sorted(self.by_tag.items())}
        out["notices"] = list(self.notices.values())
        out["slowest_calls"] = self.slowest.items()
        return out


def estimate_tokens(messages: list[Message]) -> int:
    # ≈4 characters per token: close enough to pace a limiter before the real count is known.
    return max(1, sum(len(m.content) for m in messages) // 4)
