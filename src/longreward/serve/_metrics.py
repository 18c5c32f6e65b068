"""Prometheus metrics of the reward service (``GET /metrics``).

HTTP-level figures (requests by endpoint and status, latency, the service's own overhead per
request, requests in flight) are observed by the app; item outcomes and the judge's counters
(requests, cache hits, retries, failures, tokens, by step) are read from the service and the
judge client at scrape time, so there is one source for each number.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import MissingDependencyError
from ._service import RewardService

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                    600)
_OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ModuleNotFoundError:
        raise MissingDependencyError("the /metrics endpoint of longreward serve",
                                     "prometheus-client", "serve") from None
    return prometheus_client


class _ServiceCollector:
    """Counters owned by the service and the judge client, exported at scrape time."""

    def __init__(self, service: RewardService) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.service.stats
        yield _by_label(CounterMetricFamily, "longreward_items", "Scored items by outcome "
                        "(scored; unscored: the judge gave no reward; error: could not be "
                        "scored)", "status", s.items, ("scored", "unscored", "error"))
        yield CounterMetricFamily("longreward_fallback_rewards", "Items sent the configured "
                                  "fallback reward instead of a judged one", value=s.fallback)
        yield _by_label(CounterMetricFamily, "longreward_neutral_rewards", "Items that could "
                        "not be scored, sent the neutral reward (OpenRLHF, slime, verl), by its "
                        "basis", "basis", s.neutral, ("group", "running mean", "prior"))
        yield CounterMetricFamily("longreward_truncated_prompts", "Scored items whose prompt the "
                                  "trainer had cut before generating (the policy saw part of "
                                  "it; raise its max_len)", value=s.truncated_prompts)
        yield _by_label(CounterMetricFamily, "longreward_unscored_dimensions", "Dimensions that "
                        "ended unscored, by dimension", "dimension", s.unscored_dimensions,
                        self.service.options.score.dimensions)
        yield CounterMetricFamily("longreward_deadline_exceeded", "Items unscored because the "
                                  "request deadline passed", value=s.deadline_exceeded)
        yield CounterMetricFamily("longreward_internal_errors", "Groups of items lost to a bug "
                                  "(traceback in the log)", value=s.internal_errors)
        yield CounterMetricFamily("longreward_flagged_items", "Answers holding verdict-shaped "
                                  "or judge-addressed text (flagged, not scored by it)",
                                  value=s.flagged_items)
        yield CounterMetricFamily("longreward_floored_items", "Answers given the non-answer "
                                  "floor (no grounded statement, no covered point)",
                                  value=s.floored_items)
        yield CounterMetricFamily("longreward_dropped_statements", "Statements of the judge's "
                                  "split dropped as not grounded in the answer",
                                  value=s.dropped_statements)
        flags = CounterMetricFamily("longreward_flags", "Flagged spans in answers, by kind",
                                    labels=["kind"])
        for kind, n in sorted(s.flags_by_kind.items()):
            flags.add_metric([kind], n)
        yield flags
        snap = self.service.scorer.client.snapshot()
        by_tag = snap.get("by_tag", {})
        for key, help_text in (("requests", "Requests sent to the judge (each retry counts)"),
                               ("cache_hits", "Judge calls answered from the cache (run store "
                                "or an identical call in flight)"),
                               ("retries", "Judge requests retried"),
                               ("failures", "Judge calls that failed after retries"),
                               ("copied", "Judge replies set aside as copies of the answer "
                                "(re-asked)")):
            fam = CounterMetricFamily(f"longreward_judge_{key}", help_text, labels=["step"])
            for tag, counters in by_tag.items():
                fam.add_metric([tag or "other"], counters.get(key, 0))
            yield fam
        tokens = CounterMetricFamily("longreward_judge_tokens", "Judge tokens", labels=["kind"])
        for kind in ("prompt_tokens", "completion_tokens", "cached_tokens"):
            tokens.add_metric([kind.removesuffix("_tokens")], snap.get(kind, 0))
        yield tokens
        yield GaugeMetricFamily("longreward_judge_in_flight", "Judge calls in flight",
                                value=snap.get("in_flight", 0))
        yield GaugeMetricFamily("longreward_prompts_registered", "Registered prompt ids",
                                value=self.service.n_prompts)
        yield GaugeMetricFamily("longreward_documents_registered", "Distinct registered "
                                "documents", value=self.service.n_documents)


def _by_label(family: Any, name: str, help_text: str, label: str, counts: Any,
              keys: Any) -> Any:
    """One metric family with a sample per key (0 for a key not counted yet)."""
    fam = family(name, help_text, labels=[label])
    for key in keys:
        fam.add_metric([key], counts.get(key, 0))
    return fam


class Metrics:
    """The registry behind ``/metrics`` (one per app, so tests can run several)."""

    def __init__(self, service: RewardService) -> None:
        prom = _prometheus()
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter("longreward_requests", "HTTP requests by endpoint and "
                                     "status", ["endpoint", "status"], registry=self.registry)
        self.latency = prom.Histogram("longreward_request_seconds", "Request latency",
                                      ["endpoint"], buckets=_LATENCY_BUCKETS,
                                      registry=self.registry)
        self.overhead = prom.Histogram("longreward_request_overhead_seconds", "Time of a "
                                       "scoring request not spent waiting for the scorer "
                                       "(parsing, grouping, replying)", ["endpoint"],
                                       buckets=_OVERHEAD_BUCKETS, registry=self.registry)
        self.in_flight = prom.Gauge("longreward_requests_in_flight", "Requests being handled",
                                    registry=self.registry)
        self.registry.register(_ServiceCollector(service))

    def render(self) -> tuple[bytes, str]:
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST
