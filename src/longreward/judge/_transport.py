"""Transport: which endpoint a request goes to, how many are in flight, how long it may take,
and whether each endpoint is alive.

A client spreads its calls over interchangeable endpoints (replicas of one model), each with
its own concurrency cap; the least busy endpoint gets the next request. An endpoint that does
not answer at all is reported at once (a warning and a notice in the progress display), again
every minute while it stays down, and when it answers again; one with requests in flight and no
reply for 45 s is reported too, so a dead judge is never 18 minutes of silence. That check runs
on a timer of its own while requests are in flight, so it needs no progress display.

An endpoint that refuses every connection and has never answered in this run is not a judge
that is down for a moment but one that is not there (not started, or a wrong URL): once every
endpoint has refused ``REFUSED_FATAL_AFTER`` connections the run stops with one message that
says so, instead of retrying every request for minutes. (Counted in attempts, not seconds: the
retry backoff spaces one call's attempts out, so a time limit would be checked late.) A judge
that has answered once and then goes away is an outage, retried as before.
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
from ._types import EndpointUnreachableError, JudgeFatalError, ModelError

logger = logging.getLogger("longreward.judge")

R = TypeVar("R")

#: an endpoint with requests in flight and no reply for this long is reported as stalled
STALL_S = 45.0  # with progress lines every 30 s, reported within the first minute
#: a down endpoint is reported again after this long
REPORT_EVERY_S = 60.0
#: how often the stall check runs while requests are in flight
STALL_CHECK_S = 5.0
#: this many refused connections from every endpoint, none of which has answered yet, stop
#: the run
REFUSED_FATAL_AFTER = 8


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
    #: connections refused since the endpoint last answered
    refused: int = 0


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
        #: some endpoint has answered (anything, an HTTP error included) in this run
        self.answered = False
        self._stall_timer: asyncio.TimerHandle | None = None

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
        if self._stall_timer is None:
            self._stall_timer = asyncio.get_running_loop().call_later(
                STALL_CHECK_S, self._stall_tick)
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
            if self._stall_timer is not None and not any(e.in_flight for e in self.endpoints):
                self._stall_timer.cancel()  # idle: nothing can stall
                self._stall_timer = None

    def _stall_tick(self) -> None:
        # A loop timer rather than a task: nothing is left pending when the loop ends.
        self.check_stalled()
        self._stall_timer = asyncio.get_running_loop().call_later(STALL_CHECK_S,
                                                                  self._stall_tick)

    # ------------------------------------------------------------------ health

    def _replied(self, ep: Endpoint) -> None:
        ep.last_reply = time.monotonic()
        self.answered = True
        ep.refused = 0
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
        if getattr(exc, "cannot_connect", False) and not self.answered:
            ep.refused += 1
            self._stop_if_nothing_listens(exc)
        down = now - ep.down_since
        self.stats.notice(f"down:{ep.label}", f"{ep.label} not answering for {down:.0f}s")
        if now - ep.reported_at >= REPORT_EVERY_S:
            ep.reported_at = now
            logger.warning(
                "%s is not answering (%s); down for %.0fs, still retrying. Check that the "
                "server is up and the URL is right.", ep.label, short(str(exc), 160), down)

    def _stop_if_nothing_listens(self, exc: ModelError) -> None:
        if any(e.refused < REFUSED_FATAL_AFTER for e in self.endpoints):
            return
        where = ", ".join(e.label for e in self.endpoints)
        raise JudgeFatalError(
            f"cannot connect to the judge at {where}: it refused {REFUSED_FATAL_AFTER} "
            f"connections in a row ({short(str(exc), 160)}) and has not answered once in this "
            "run, so the run stops instead of retrying every request. Fix: start the judge "
            "server (or wait until it accepts connections), or correct --base-url; then rerun "
            "the same command: finished answers are kept.") from exc

    def check_stalled(self) -> None:
        """Report endpoints with requests in flight and no reply for ``STALL_S`` (called from
        the progress display; also safe from another thread: it only reads counters)."""
        now = time.monotonic()
        for ep in self.endpoints:
            if getattr(ep.api, "waits_by_design", False):
                continue  # batch requests wait for their round, for hours if need be
            if ep.in_flight and ep.last_reply is not None and now - ep.last_reply >= STALL_S:
                quiet = now - ep.last_reply
                self.stats.notice(f"down:{ep.label}",
                                  f"no reply from {ep.label} for {quiet:.0f}s")
                if now - ep.reported_at >= REPORT_EVERY_S:
                    ep.reported_at = now
                    logger.warning("no reply from %s for %.0fs (%d request(s) waiting); is the "
                                   "server up and not overloaded?", ep.label, quiet, ep.in_flight)
