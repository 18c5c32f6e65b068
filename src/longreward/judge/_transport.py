"""Transport: which endpoint a request goes to, how many are in flight, how long it may take,
and whether each endpoint is alive.

A client spreads its calls over interchangeable endpoints (replicas of one model), each with
its own concurrency cap; the least busy endpoint gets the next request. An endpoint that does
not answer at all is reported at once (a warning and a notice in the progress display), again
every minute while it stays down, and when it answers again; one with requests in flight and no
reply for 45 s is reported too, so a dead judge is never 18 minutes of silence.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .._util.redact import redact
from .._util.text import short
from ._accounting import ClientStats
from ._provider import ModelAPI
from ._types import EndpointUnreachableError, ModelError

logger = logging.getLogger("longreward.judge")

R = TypeVar("R")

#: an endpoint with requests in flight and no reply for this long is reported as stalled
STALL_S = 45.0  # with progress lines every 30 s, reported within the first minute
#: a down endpoint is reported again after this long
REPORT_EVERY_S = 60.0


@dataclass
class Endpoint:
    api: ModelAPI
    index: int
    semaphore: asyncio.Semaphore
    label: str
    in_flight: int = 0
    #: monotonic time of the last reply of any kind (an HTTP error is a reply), or of the
    #: start of the current busy period
    last_reply: float | None = None
    down_since: float | None = None
    reported_at: float = field(default=-1e18)


if sys.version_info >= (3, 11):
    async def _within(seconds: float, awaitable: Awaitable[R]) -> R:
        async with asyncio.timeout(seconds):  # no extra task per call, unlike wait_for
            return await awaitable
else:  # pragma: no cover - Python 3.10
    async def _within(seconds: float, awaitable: Awaitable[R]) -> R:
        return await asyncio.wait_for(awaitable, seconds)


class Transport:
    def __init__(self, apis: list[ModelAPI], stats: ClientStats, *,
                 max_concurrency: int | None = None, timeout: float = 300.0) -> None:
        self.stats = stats
        self.timeout = timeout
        self.endpoints = [
            Endpoint(api, i, asyncio.Semaphore(max_concurrency or api.max_connections()),
                     redact(api.endpoint_label()))
            for i, api in enumerate(apis)
        ]
        self._next = 0  # round-robin among equally busy endpoints

    def pick(self) -> Endpoint:
        eps = self.endpoints
        if len(eps) == 1:
            return eps[0]
        n = len(eps)
        best = min(((self._next + i) % n for i in range(n)), key=lambda i: eps[i].in_flight)
        self._next = (best + 1) % n
        return eps[best]

    async def send(self, call: Callable[[Endpoint], Awaitable[R]], *, tag: str,
                   before: Callable[[], Awaitable[object]] | None = None,
                   timeout: float | None = None, endpoint: Endpoint | None = None) -> R:
        """Run ``call`` on an endpoint under its concurrency cap and the timeout. ``before``
        runs once a slot is held (the rate limiters). A timeout or a connection failure is an
        ``EndpointUnreachableError``; every error is tagged with the endpoint's label."""
        ep = endpoint or self.pick()
        if ep.in_flight == 0:
            ep.last_reply = time.monotonic()  # the stall clock starts with a busy period
        ep.in_flight += 1
        self.stats.in_flight += 1
        try:
            async with ep.semaphore:
                if before is not None:
                    await before()
                self.stats._bump(tag, "requests")
                limit = self.timeout if timeout is None else timeout
                try:
                    out = await _within(limit, call(ep))
                except asyncio.TimeoutError as exc:
                    error: ModelError = EndpointUnreachableError(f"no reply within {limit:g}s")
                    error.endpoint = ep.label
                    if timeout is None:  # a probe's deliberately short wait says nothing
                        self._unreachable(ep, error)  # about the endpoint's health
                    raise error from exc
                except EndpointUnreachableError as exc:
                    self._unreachable(ep, exc)
                    raise
                except ModelError as exc:
                    exc.endpoint = ep.label
                    self._replied(ep)
                    raise
                self._replied(ep)
                return out
        finally:
            ep.in_flight -= 1
            self.stats.in_flight -= 1

    # ------------------------------------------------------------------ health

    def _replied(self, ep: Endpoint) -> None:
        ep.last_reply = time.monotonic()
        if ep.down_since is not None:
            logger.warning("%s answers again after %.0fs", ep.label,
                           ep.last_reply - ep.down_since)
            ep.down_since = None
            ep.reported_at = -1e18
        if self.stats.notices:  # a reply ends "not answering", "no reply for" and "waiting"
            self.stats.notice(f"down:{ep.label}", None)
            self.stats.notice(f"wait:{ep.label}", None)

    def _unreachable(self, ep: Endpoint, exc: ModelError) -> None:
        exc.endpoint = ep.label
        now = time.monotonic()
        if ep.down_since is None:
            ep.down_since = now
        down = now - ep.down_since
        self.stats.notice(f"down:{ep.label}", f"{ep.label} not answering for {down:.0f}s")
        if now - ep.reported_at >= REPORT_EVERY_S:
            ep.reported_at = now
            logger.warning(
                "%s is not answering (%s); down for %.0fs, still retrying. Check that the "
                "server is up and the URL is right.", ep.label, short(str(exc), 160), down)

    def check_stalled(self) -> None:
        """Report endpoints with requests in flight and no reply for ``STALL_S`` (called from
        the progress display; also safe from another thread: it only reads counters)."""
        now = time.monotonic()
        for ep in self.endpoints:
            if ep.in_flight and ep.last_reply is not None and now - ep.last_reply >= STALL_S:
                quiet = now - ep.last_reply
                self.stats.notice(f"down:{ep.label}",
                                  f"no reply from {ep.label} for {quiet:.0f}s")
                if now - ep.reported_at >= REPORT_EVERY_S:
                    ep.reported_at = now
                    logger.warning("no reply from %s for %.0fs (%d request(s) waiting); is the "
                                   "server up and not overloaded?", ep.label, quiet, ep.in_flight)
