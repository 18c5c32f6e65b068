"""Retries and limits: the retry loop (tenacity), rate limits (aiolimiter) and fail-fast.

- **Retries.** Retryable errors (429, 5xx, timeouts, connection problems) back off with full
  jitter up to ``max_retries`` times; a server's ``Retry-After`` is honoured but capped
  (``max_retry_after``), and a long wait is logged. Permanent errors raise at once.
- **Rate limits.** Requests and tokens per minute, each a leaky bucket holding one second's
  worth (a burst of ``rpm/60`` requests). Tokens are charged in two steps: the prompt
  estimate before sending, the rest of the reply's real usage once it is known, paid by the
  caller before it gets its result. Nothing is charged twice and nothing needs a refund, so
  the long-run rate holds even for a prompt bigger than the bucket.
- **Fail fast.** What retrying cannot fix stops the run with one ``JudgeFatalError``: a refused
  key (401/403), an unknown model or path (404), or the same permanent error on
  ``fatal_after`` calls in a row.

tenacity costs ≈37 µs per call and aiolimiter ≈2 µs per acquire on the development machine
(``benchmarks/client_throughput.py --micro``), next to ≈1.3 ms of client CPU per judge call.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from .._util.redact import redact
from .._util.text import short
from ._accounting import ClientStats
from ._types import (
    ContextTooLongError,
    JudgeFatalError,
    ModelError,
    PermanentError,
    RetryableError,
    SchemaUnsupportedError,
)

logger = logging.getLogger("longreward.judge")

R = TypeVar("R")

#: a wait at least this long is logged and shown in the progress display
LONG_WAIT_S = 10.0


class RateLimits:
    """Requests-per-minute and tokens-per-minute limits shared by all endpoints of a client."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        # time_period=1: the bucket holds one second's worth, so a limit of 600/min does not
        # start with a burst of 600
        self._rpm = AsyncLimiter(rpm / 60.0, 1.0) if rpm else None
        self._tpm = AsyncLimiter(tpm / 60.0, 1.0) if tpm else None

    @property
    def active(self) -> bool:
        return self._rpm is not None or self._tpm is not None

    async def before(self, tokens: int) -> int:
        """Wait for a request slot and ``tokens`` (the prompt estimate); returns what was
        charged, to pass to ``after``."""
        if self._rpm is not None:
            await self._rpm.acquire(1)
        if self._tpm is None:
            return 0
        await self._charge(tokens)
        return tokens

    async def after(self, charged: int, used: int) -> None:
        """Charge the tokens the call used beyond ``charged`` (its reply, a longer prompt)."""
        if self._tpm is not None and used > charged:
            await self._charge(used - charged)

    async def _charge(self, tokens: float) -> None:
        assert self._tpm is not None
        # aiolimiter refuses an amount above its capacity; a big prompt is paid in slices
        # small enough not to wait behind every small request for a completely empty bucket
        piece = max(1.0, self._tpm.max_rate / 4)
        while tokens > 0:
            amount = min(tokens, piece)
            await self._tpm.acquire(amount)
            tokens -= amount


class RetryPolicy:
    """The one retry loop. ``run(fn, tag)`` calls ``fn`` until it returns, raises a
    non-retryable error, or has failed ``max_retries + 1`` times (then the last error)."""

    def __init__(self, stats: ClientStats, *, max_retries: int = 6, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, max_retry_after: float = 120.0,
                 rng: random.Random | None = None) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if max_retry_after <= 0:
            raise ValueError("max_retry_after must be positive")
        self.stats = stats
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self._rng = rng or random.Random()
        self._warned_at: dict[str, float] = {}

    def backoff(self, retry: int, retry_after: float | None) -> float:
        # Full jitter spreads a burst of 429s out instead of retrying them in lockstep.
        delay = self._rng.uniform(0, min(self.backoff_max, self.backoff_base * 2**retry))
        if retry_after is not None:
            # the server said when; sooner is only refused again. Capped: a proxy that says
            # "come back in an hour" must not park the run silently for an hour.
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self.backoff(state.attempt_number - 1, getattr(exc, "retry_after", None))

    async def run(self, fn: Callable[[], Awaitable[R]], tag: str) -> R:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            self.stats._bump(tag, "retries")
            logger.debug("retrying %s call in %.2fs (%d/%d): %s", tag or "model", delay,
                         state.attempt_number, self.max_retries, short(str(exc)))
            if delay >= LONG_WAIT_S:
                self._long_wait(exc, delay)

        # one AsyncRetrying per call: its iteration state is not safe to share between
        # concurrent coroutines
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(RetryableError),
            before_sleep=before_sleep,
            reraise=True,
        )
        async def attempt() -> R:  # tenacity awaits only what it sees is a coroutine function
            return await fn()

        return await retrying(attempt)

    def _long_wait(self, exc: BaseException | None, delay: float) -> None:
        where = getattr(exc, "endpoint", None) or "the endpoint"
        asked = getattr(exc, "retry_after", None)
        why = (f"it asked for Retry-After {asked:g}s"
               + (f", capped at max_retry_after={self.max_retry_after:g}s"
                  if asked > self.max_retry_after else "")
               if asked is not None else f"backing off after: {short(str(exc), 120)}")
        text = f"waiting {delay:.0f}s before retrying {where} ({why})"
        self.stats.notice(f"wait:{where}", text)
        now = time.monotonic()
        if now - self._warned_at.get(where, -1e9) >= 60:  # once a minute per endpoint
            self._warned_at[where] = now
            logger.warning("%s", text)


_NUMBERS = re.compile(r"\d+")


class FailFast:
    """Turns errors that retrying cannot fix into one ``JudgeFatalError`` for the whole run."""

    def __init__(self, after: int = 5) -> None:
        if after < 1:
            raise ValueError("fatal_after must be >= 1")
        self.after = after
        self.error: JudgeFatalError | None = None  # once set, every call raises it
        self._streak = 0
        self._last: tuple[object, ...] | None = None
        self._worked = False  # some call of this client has succeeded

    def success(self) -> None:
        self._streak = 0
        self._last = None
        self._worked = True

    def check(self, exc: ModelError, *, negotiating: bool = False) -> None:
        """Raise ``JudgeFatalError`` when ``exc`` (a call's final error) means no later call
        can succeed. ``negotiating``: a schema refusal is the ladder's business then."""
        if self.error is not None:
            raise self.error
        if isinstance(exc, RetryableError) and (exc.status != 500 or self._worked):
            return  # an outage (429, 502-504, timeouts, refused connections): never fatal
        # A 500 is retried like an outage, but a server that has answered nothing but the
        # same 500, each call after all its retries, is broken or will never take these
        # requests (llama.cpp answers an unsupported option with a 500). Once a call has
        # succeeded, a run of 500s may be one bad document's: those calls end unscored.
        if not isinstance(exc, (PermanentError, RetryableError)) or isinstance(
                exc, ContextTooLongError):
            self.success()  # a too-long prompt is one record's problem, not the judge's
            return
        if isinstance(exc, SchemaUnsupportedError) and negotiating:
            return
        where = exc.endpoint or "the model endpoint"
        text = redact(short(str(exc), 400))
        if exc.status in (401, 403):
            self._fatal(
                f"{where} refused the request ({text}). Retrying cannot fix this, so the run "
                "stops. Fix: check the API key (--api-key-env NAME, or LONGREWARD_API_KEY / "
                "OPENAI_API_KEY) and any --header values the server needs.")
        if exc.status == 404:
            self._fatal(
                f"{where} does not know this model or path ({text}). Retrying cannot fix "
                "this, so the run stops. Fix: check --model against the models the server "
                "lists (`longreward probe --base-url URL --model NAME` shows them) and that "
                "--base-url ends with /v1.")
        signature = (type(exc), exc.status, _NUMBERS.sub("#", str(exc)))
        self._streak = self._streak + 1 if signature == self._last else 1
        self._last = signature
        if self._streak < self.after:
            return
        if isinstance(exc, RetryableError):
            self._fatal(f"{where} failed {self._streak} calls in a row, each after its "
                        f"retries, with the same server error ({text}), so the run stops "
                        "instead of sending every request. Fix the server (its log says "
                        "why), then rerun the same command: finished answers are kept.")
        hint = ("Fix: use --structured-output auto, which finds the reply format the "
                "server takes." if isinstance(exc, SchemaUnsupportedError) else
                "Fix: check the options the message names (model, max tokens, "
                "temperature, headers) against what the server accepts; `longreward "
                "probe` shows what it supports.")
        self._fatal(f"{where} failed {self._streak} calls in a row with the same "
                    f"permanent error ({text}). Retrying cannot fix this, so the run "
                    f"stops. {hint}")

    def _fatal(self, message: str) -> None:
        # Not logged: the error travels up to whoever runs the judge (the CLI prints it once,
        # serve gives it as the items' reason); a log line here printed it twice.
        self.error = JudgeFatalError(message)
        raise self.error
