"""``ModelClient``: the one path every model call takes.

Concurrency (a semaphore per endpoint), rate limits (requests and tokens per minute), retries
(bounded, exponential backoff with full jitter, ``Retry-After`` honoured, retryable errors
separated from permanent ones), the call cache and usage accounting live here and nowhere else.
Providers (``ModelAPI``) only turn one request into one ``ModelOutput`` or one ``ModelError``.

``ModelClient.ask`` adds the judge protocol on top: ask for a JSON-schema reply and validate it
with pydantic; if the endpoint rejects schemas, switch the whole client to tagged text once and
parse that instead; re-ask an unparsable reply, first at the caller's temperature (≈0) and then
at a higher one, as the LongReward reference does (5 tries, T≈0 then 0.95). A judge that still
fails yields ``Asked(value=None, error=...)`` with every raw reply kept: a result, never an
exception and never a default score.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._provider import ModelAPI
from ._types import (
    GenerateConfig,
    JsonSchema,
    Message,
    ModelError,
    ModelOutput,
    ReplyParseError,
    RetryableError,
    SchemaUnsupportedError,
    Usage,
)

logger = logging.getLogger("longreward.judge")

ReplyMode = Literal["json", "text"]
StructuredOutput = Literal["auto", "json", "text"]

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")


@runtime_checkable
class CallCache(Protocol):
    """Where successful model outputs are kept between runs (``RunStore`` implements it)."""

    def get_call(self, key: str) -> dict[str, Any] | None: ...

    def put_call(self, key: str, value: dict[str, Any]) -> None: ...


class Price(BaseModel):
    """USD per million tokens. ``cached_input_per_mtok`` defaults to the input price."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)

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
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "cached_tokens": self.usage.cached_tokens,
        }


class ClientStats:
    """Totals and per-tag counters. Only touched from the event loop, so no lock."""

    def __init__(self) -> None:
        self.total = TagStats()
        self.by_tag: dict[str, TagStats] = {}
        self.in_flight = 0

    def tag(self, tag: str) -> TagStats:
        if tag not in self.by_tag:
            self.by_tag[tag] = TagStats()
        return self.by_tag[tag]

    def _bump(self, tag: str, name: str, n: int = 1) -> None:
        for stats in (self.total, self.tag(tag)):
            setattr(stats, name, getattr(stats, name) + n)

    def _add_usage(self, tag: str, usage: Usage) -> None:
        for stats in (self.total, self.tag(tag)):
            stats.usage = stats.usage + usage

    def snapshot(self, price: Price | None = None) -> dict[str, Any]:
        """A plain dict for progress bars and logs."""
        out: dict[str, Any] = self.total.as_dict()
        out["in_flight"] = self.in_flight
        out["cost_usd"] = price.cost(self.total.usage) if price else None
        out["by_tag"] = {name: s.as_dict() for name, s in sorted(self.by_tag.items())}
        return out


@dataclass
class Asked(Generic[T]):
    """The outcome of ``ModelClient.ask``: a parsed reply, or ``value=None`` and a reason."""

    value: T | None
    error: str | None = None
    raw: list[str] = field(default_factory=list)  # every reply seen, in order
    mode: ReplyMode = "json"
    usage: Usage = field(default_factory=Usage)  # of the requests this ask sent (not cache hits)
    calls: int = 0  # generate() calls that returned an output (cached or not)
    attempts: int = 0  # replies judged (the one that parsed included)

    @property
    def ok(self) -> bool:
        return self.value is not None


class _RateLimiter:
    """A token bucket refilled at ``per_minute / 60`` per second, holding at most one second's
    worth. A request bigger than the bucket may pass once the bucket is full and leaves a debt,
    so a 30k-token prompt is not blocked forever by a 10k/min limit, and the long-run rate
    still holds."""

    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ValueError(f"a rate limit must be positive, got {per_minute}")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()  # first come, first served

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self, amount: float) -> None:
        async with self._lock:
            need = min(amount, self.capacity)
            while True:
                self._refill()
                if self.level >= need:
                    self.level -= amount
                    return
                await asyncio.sleep((need - self.level) / self.rate)

    def adjust(self, extra: float) -> None:
        """Charge ``extra`` more (or refund if negative) once the true size is known."""
        self._refill()
        self.level = min(self.capacity, self.level - extra)


def _estimate_tokens(messages: list[Message]) -> int:
    # ≈4 characters per token: close enough to pace a limiter before the real count is known.
    return max(1, sum(len(m.content) for m in messages) // 4)


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def parse_json_reply(text: str, model: type[T]) -> T:
    """Validate a JSON reply, tolerating ```json fences and prose around one JSON object."""
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    first_error: ValidationError | None = None
    for candidate in candidates:
        try:
            return model.model_validate_json(candidate)
        except ValidationError as exc:
            first_error = first_error or exc
    raise ReplyParseError(f"reply is not a valid {model.__name__}: {_short(str(first_error))}")


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ModelClient:
    """The one path for every model call. See the module docstring.

    A client belongs to one event loop (its semaphores and the SDK's connections do).
    """

    def __init__(
        self,
        apis: ModelAPI | list[ModelAPI],
        *,
        cache: CallCache | None = None,
        max_concurrency: int | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        max_retries: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        timeout: float = 300.0,
        prices: Price | None = None,
        structured_output: StructuredOutput = "auto",
    ) -> None:
        self.apis: list[ModelAPI] = [apis] if isinstance(apis, ModelAPI) else list(apis)
        if not self.apis:
            raise ValueError("ModelClient needs at least one ModelAPI")
        identities = {_canonical(api.cache_identity()) for api in self.apis}
        if len(identities) > 1:
            # Endpoints are interchangeable replicas; mixing models would make results depend
            # on which endpoint happened to be least busy.
            raise ValueError(
                "all endpoints of one ModelClient must serve the same provider and model; "
                f"got {sorted(identities)}"
            )
        if structured_output not in ("auto", "json", "text"):
            raise ValueError(
                f"structured_output must be auto, json or text, not {structured_output!r}"
            )
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.cache = cache
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.prices = prices
        self.structured_output: StructuredOutput = structured_output
        self.stats = ClientStats()
        self._identity = self.apis[0].cache_identity()
        self._semaphores = [
            asyncio.Semaphore(max_concurrency or api.max_connections()) for api in self.apis
        ]
        self._in_flight = [0] * len(self.apis)
        self._next = 0  # round-robin among equally busy endpoints
        self._rpm = _RateLimiter(rpm) if rpm else None
        self._tpm = _RateLimiter(tpm) if tpm else None
        self._rng = random.Random()
        self._text_mode = structured_output == "text"
        self._schema_ok = structured_output == "json"  # a schema request has succeeded
        self._schema_probe: asyncio.Future[None] | None = None
        self._pending: dict[str, asyncio.Future[ModelOutput | None]] = {}

    # ------------------------------------------------------------------ generate

    @property
    def reply_mode(self) -> ReplyMode:
        """The mode ``ask`` uses now: "text" once forced or once an endpoint rejected schemas."""
        return "text" if self._text_mode else "json"

    def cache_key(
        self,
        messages: list[Message],
        config: GenerateConfig,
        json_schema: JsonSchema | None = None,
        attempt: int = 0,
    ) -> str:
        """sha256 of (provider+model, messages, config, schema, attempt). No URLs, no keys."""
        payload = {
            "model": self._identity,
            "messages": [m.model_dump() for m in messages],
            # exclude_none: a new optional GenerateConfig field does not invalidate old caches
            "config": config.model_dump(exclude_none=True),
            "json_schema": json_schema,
            "attempt": attempt,
        }
        return hashlib.sha256(_canonical(payload).encode("utf-8")).hexdigest()

    async def generate(
        self,
        messages: list[Message],
        config: GenerateConfig,
        json_schema: JsonSchema | None = None,
        *,
        tag: str = "",
        attempt: int = 0,
    ) -> ModelOutput:
        """One model call through the cache, the limiters and the retry loop.

        ``attempt`` only enters the cache key: a re-ask of an unparsable reply at the same
        settings must reach the model instead of getting the same bad reply from the cache.
        Raises the last ``ModelError`` when retries run out, a ``PermanentError`` at once.
        """
        if self.cache is None:
            return await self._with_retries(messages, config, json_schema, tag)
        key = self.cache_key(messages, config, json_schema, attempt)
        while True:
            hit = self.cache.get_call(key)
            if hit is not None:
                try:
                    out = ModelOutput.model_validate(hit)
                except ValidationError:
                    logger.debug("ignoring an unreadable cache entry %s", key[:12])
                else:
                    self.stats._bump(tag, "cache_hits")
                    return out.model_copy(update={"cached": True})
            # The same request already in flight (e.g. one statement in two candidates):
            # wait for it instead of paying twice. With a cache, equal keys mean equal
            # outputs anyway, so this changes no result, only the bill.
            pending = self._pending.get(key)
            if pending is None:
                break
            shared = await asyncio.shield(pending)  # raises the leader's ModelError
            if shared is not None:
                self.stats._bump(tag, "cache_hits")
                return shared.model_copy(update={"cached": True})
            # the leader was cancelled without a result: look again, or lead
        future: asyncio.Future[ModelOutput | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            out = await self._with_retries(messages, config, json_schema, tag)
        except ModelError as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        except BaseException:
            future.set_result(None)
            raise
        finally:
            self._pending.pop(key, None)
        self.cache.put_call(key, out.model_dump())
        future.set_result(out)
        return out

    async def _with_retries(
        self,
        messages: list[Message],
        config: GenerateConfig,
        json_schema: JsonSchema | None,
        tag: str,
    ) -> ModelOutput:
        estimate = _estimate_tokens(messages) + (config.max_tokens or 0) * config.n
        return await self._retrying(
            lambda api: api.generate(messages, config, json_schema), estimate, tag)

    async def embed(self, texts: list[str], *, tag: str = "embed") -> list[list[float]]:
        """Embeddings of ``texts`` through the same endpoints, limiters and retries as
        ``generate`` (used by the API-embedding retriever). Not cached: embeddings are
        cheap next to judge calls, and an index is built once per document anyway."""
        estimate = sum(len(t) for t in texts) // 4 + 1
        out = await self._retrying(lambda api: api.embed(texts), estimate, tag)
        # An estimate, kept under its own tag only: the run's token totals and the cost
        # estimate are the judge's (``prices`` are chat prices, not embedding prices).
        tagged = self.stats.tag(tag)
        tagged.usage = tagged.usage + Usage(prompt_tokens=estimate)
        return out

    async def _retrying(self, call: Callable[[ModelAPI], Awaitable[R]], estimate: int,
                        tag: str) -> R:
        """The retry loop: retryable errors back off (full jitter, at least Retry-After) up
        to ``max_retries`` times; permanent errors raise at once."""
        last_error: ModelError | None = None
        for retry in range(self.max_retries + 1):
            try:
                return await self._send(call, estimate, tag)
            except RetryableError as exc:
                last_error = exc
                if retry == self.max_retries:
                    break
                self.stats._bump(tag, "retries")
                delay = self._backoff(retry, exc.retry_after)
                logger.debug(
                    "retrying %s call in %.2fs (%d/%d): %s",
                    tag or "model",
                    delay,
                    retry + 1,
                    self.max_retries,
                    _short(str(exc)),
                )
                await asyncio.sleep(delay)
            except SchemaUnsupportedError:
                raise  # capability negotiation: ``ask`` switches to text, nothing failed
            except ModelError:
                self.stats._bump(tag, "failures")
                raise
        self.stats._bump(tag, "failures")
        assert last_error is not None
        raise last_error

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        # Full jitter spreads a burst of 429s out instead of retrying them in lockstep.
        delay = self._rng.uniform(0, min(self.backoff_max, self.backoff_base * 2**retry))
        if retry_after is not None:
            delay = max(delay, retry_after)  # the server said when; sooner is only refused again
        return delay

    def _pick_endpoint(self) -> int:
        n = len(self.apis)
        order = [(self._next + i) % n for i in range(n)]
        best = min(order, key=lambda i: self._in_flight[i])
        self._next = (best + 1) % n
        return best

    async def _send(self, call: Callable[[ModelAPI], Awaitable[R]], estimate: int,
                    tag: str) -> R:
        index = self._pick_endpoint()
        api = self.apis[index]
        self._in_flight[index] += 1
        self.stats.in_flight += 1
        try:
            async with self._semaphores[index]:
                if self._rpm:
                    await self._rpm.acquire(1)
                if self._tpm:
                    await self._tpm.acquire(estimate)
                self.stats._bump(tag, "requests")
                try:
                    out = await asyncio.wait_for(call(api), self.timeout)
                except asyncio.TimeoutError as exc:
                    raise RetryableError(f"no reply within {self.timeout:g}s") from exc
                if isinstance(out, ModelOutput):
                    if self._tpm and out.usage.total_tokens:  # some servers report no usage
                        self._tpm.adjust(out.usage.total_tokens - estimate)
                    self.stats._add_usage(tag, out.usage)
                return out
        finally:
            self._in_flight[index] -= 1
            self.stats.in_flight -= 1

    # ------------------------------------------------------------------ ask

    async def ask(
        self,
        build_messages: Callable[[ReplyMode], list[Message]],
        reply_model: type[T],
        parse_text: Callable[[str], T],
        *,
        tag: str,
        config: GenerateConfig | None = None,
        attempts: int = 5,
        retry_temperature: float = 0.95,
    ) -> Asked[T]:
        """Ask for a reply of type ``reply_model``; never raises for a judge failure.

        ``build_messages(mode)`` builds the prompt for "json" (schema reply) or "text" (tagged
        reply parsed by ``parse_text``, which raises ``ReplyParseError``).
        """
        config = config or GenerateConfig()
        mode: ReplyMode = self.reply_mode
        messages = build_messages(mode)
        raw: list[str] = []
        reasons: list[str] = []
        usage = Usage()
        calls = 0
        attempt = 0
        json_schema = reply_model.model_json_schema()
        self.stats._bump(tag, "asks")

        def give_up(reason: str) -> Asked[T]:
            self.stats._bump(tag, "unscored")
            return Asked(
                value=None,
                error=reason,
                raw=raw,
                mode=mode,
                usage=usage,
                calls=calls,
                attempts=attempt,
            )

        while attempt < attempts:
            if mode == "json" and self._text_mode:  # another ask found out meanwhile
                mode = "text"
                messages = build_messages(mode)
            schema = json_schema if mode == "json" else None
            settings = (
                config
                if attempt == 0
                else config.model_copy(update={"temperature": retry_temperature})
            )
            prober = False
            if schema is not None and self.structured_output == "auto" and not self._schema_ok:
                # Until one schema request has gone through, let only one ask find out whether
                # the endpoint takes schemas; the others wait instead of all being rejected.
                if self._schema_probe is not None:
                    await asyncio.shield(self._schema_probe)
                    continue  # the mode may have changed; not an attempt
                self._schema_probe = asyncio.get_running_loop().create_future()
                prober = True
            try:
                out = await self.generate(messages, settings, schema, tag=tag, attempt=attempt)
                if schema is not None:
                    self._schema_ok = True
            except SchemaUnsupportedError as exc:
                if mode == "json" and self.structured_output == "auto":
                    self._switch_to_text(exc)
                    continue  # the rejected request produced no reply; not an attempt
                return give_up(
                    f"the endpoint rejected the request format ({_short(str(exc))}); "
                    "use structured_output='auto' or 'text'"
                )
            except ModelError as exc:
                kind = "retries exhausted" if exc.retryable else "permanent error"
                return give_up(
                    f"model call failed ({kind}, {type(exc).__name__}): {_short(str(exc))}"
                )
            finally:
                if prober:
                    probe, self._schema_probe = self._schema_probe, None
                    if probe is not None and not probe.done():
                        probe.set_result(None)
            calls += 1
            if not out.cached:
                usage = usage + out.usage
            text = out.text
            raw.append(text)
            attempt += 1
            if not text.strip():
                reason = "empty reply"
            else:
                try:
                    value = (
                        parse_json_reply(text, reply_model) if mode == "json" else parse_text(text)
                    )
                except (ReplyParseError, ValidationError) as exc:
                    reason = _short(str(exc))
                else:
                    return Asked(
                        value=value,
                        error=None,
                        raw=raw,
                        mode=mode,
                        usage=usage,
                        calls=calls,
                        attempts=attempt,
                    )
            reasons.append(reason)
            self.stats._bump(tag, "unparsable")
            logger.debug("unparsable %s reply (attempt %d/%d): %s", tag, attempt, attempts, reason)
        last = reasons[-1] if reasons else "no attempt was made"
        return give_up(f"no parsable reply after {attempt} attempt(s); last problem: {last}")

    def _switch_to_text(self, exc: SchemaUnsupportedError) -> None:
        if not self._text_mode:
            self._text_mode = True
            logger.warning(
                "the judge endpoint rejected JSON-schema replies (%s); "
                "using tagged-text replies for the rest of this run",
                _short(str(exc), 160),
            )

    # ------------------------------------------------------------------ accounting

    def cost_usd(self) -> float | None:
        """Cost of the requests sent so far (cache hits are free), or None without prices."""
        return self.prices.cost(self.stats.total.usage) if self.prices else None

    def snapshot(self) -> dict[str, Any]:
        return self.stats.snapshot(self.prices)

    async def aclose(self) -> None:
        for api in self.apis:
            await api.aclose()

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
