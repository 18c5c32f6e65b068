"""The call cache: keys, lookups, and single-flight for equal requests already in flight.

The key is a sha256 of (provider + model, messages, generation settings, JSON schema, attempt),
and of the ``response_format`` rung for the json_object rungs only, so that caches written
before the structured-output ladder existed stay valid. It never holds a URL or a key.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from ._accounting import ClientStats
from ._types import (
    GenerateConfig,
    JsonSchema,
    JudgeFatalError,
    Message,
    ModelError,
    ModelOutput,
    StructuredMode,
)

logger = logging.getLogger("longreward.judge")

#: the cache key of the call being made, for a provider that names its requests by it (the
#: batch transport: a batch line's ``custom_id`` carries the key its reply is cached under)
CALL_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_key", default=None)


@runtime_checkable
class CallCache(Protocol):
    """Where successful model outputs are kept between runs (``RunStore`` implements it)."""

    def get_call(self, key: str) -> dict[str, Any] | None: ...

    def put_call(self, key: str, value: dict[str, Any]) -> None: ...


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class CacheKeys:
    """Builds cache keys. The canonical JSON of the payload is assembled from parts, and the
    parts that repeat (the model identity, a reply model's schema) are serialised once: the
    text equals ``canonical(payload)`` (a test checks it), at a fraction of the cost."""

    def __init__(self, identity: dict[str, Any]) -> None:
        self._identity = canonical(identity)
        self._schemas: dict[int, tuple[JsonSchema, str]] = {}

    def _schema(self, schema: JsonSchema | None) -> str:
        if schema is None:
            return "null"
        hit = self._schemas.get(id(schema))
        if hit is not None and hit[0] is schema:
            return hit[1]
        text = canonical(schema)
        if len(self._schemas) < 256:  # reply models are few; a caller building fresh dicts
            self._schemas[id(schema)] = (schema, text)  # per call just skips the memo
        return text

    def key(self, messages: list[Message], config: GenerateConfig,
            json_schema: JsonSchema | None = None, attempt: int = 0,
            structured: StructuredMode | None = None) -> str:
        parts = [
            '{"attempt":', canonical(attempt),
            # exclude_none: a new optional GenerateConfig field does not invalidate old caches
            ',"config":', canonical(config.model_dump(exclude_none=True)),
            ',"json_schema":', self._schema(json_schema),
            ',"messages":', canonical([{"content": m.content, "role": m.role} for m in messages]),
            ',"model":', self._identity,
        ]
        if structured in ("json_object_schema", "json_object"):
            parts += [',"response_format":', canonical(structured)]
        parts.append("}")
        return hashlib.sha256("".join(parts).encode("utf-8")).hexdigest()


class CachedCalls:
    """Cache lookups plus single-flight: the same request already in flight (one statement in
    two candidates) is awaited instead of sent twice. With a cache, equal keys mean equal
    outputs anyway, so this changes no result, only the bill. A cache shared by several
    processes may offer ``claim_call(key) -> bool`` and ``release_call(key)``
    (``RunStore``): then a call another process is making is waited for too."""

    def __init__(self, stats: ClientStats) -> None:
        self.stats = stats
        self._pending: dict[str, asyncio.Future[ModelOutput | None]] = {}

    async def get_or_call(self, cache: CallCache, key: str, tag: str,
                          call: Callable[[], Awaitable[ModelOutput]]) -> ModelOutput:
        claim = getattr(cache, "claim_call", None)
        wait = 0.02
        while True:
            hit = cache.get_call(key)
            if hit is not None:
                try:
                    out = ModelOutput.model_validate(hit)
                except ValidationError:
                    logger.debug("ignoring an unreadable cache entry %s", key[:12])
                else:
                    self.stats._bump(tag, "cache_hits")
                    return out.model_copy(update={"cached": True})
            pending = self._pending.get(key)
            if pending is None:
                # Another process sharing this cache (a trainer's reward workers) may be
                # making the very call: wait for its result instead of paying twice.
                if claim is None or claim(key):
                    break
                await asyncio.sleep(wait)
                wait = min(wait * 1.5, 0.25)
                continue
            shared = await asyncio.shield(pending)  # raises the leader's error
            if shared is not None:
                self.stats._bump(tag, "cache_hits")
                return shared.model_copy(update={"cached": True})
            # the leader was cancelled without a result: look again, or lead
        if claim is not None:
            call = _released_on_failure(call, cache, key)
        future: asyncio.Future[ModelOutput | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        token = CALL_KEY.set(key)
        try:
            out = await call()
        except (ModelError, JudgeFatalError) as exc:
            # the followers get the leader's error
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        except BaseException:
            future.set_result(None)
            raise
        finally:
            CALL_KEY.reset(token)
            self._pending.pop(key, None)
        cache.put_call(key, out.model_dump())
        future.set_result(out)
        return out


def _released_on_failure(call: Callable[[], Awaitable[ModelOutput]], cache: Any,
                         key: str) -> Callable[[], Awaitable[ModelOutput]]:
    """``call`` that gives up its cross-process claim when it fails or is cancelled, so a
    waiting process makes the call itself (a success clears the claim with the result)."""

    async def claimed() -> ModelOutput:
        try:
            return await call()
        except BaseException:
            cache.release_call(key)
            raise

    return claimed
