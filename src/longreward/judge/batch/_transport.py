"""The batch transport: the normal client and scorer run unchanged, and a call that misses
the cache is *parked* instead of sent.

- ``BatchAPI`` is the OpenAI-compatible provider with its HTTP step replaced: it builds the
  very request body the online client would send (so results are identical by construction),
  and hands it to the round driver under the call's cache key (``judge._cache.CALL_KEY``).
- ``BatchCache`` wraps the run store as the client's cache. A reply that came back in a batch
  is returned the first time as a fresh reply (counted as a request this run made, with its
  tokens, exactly as online), from the cache after that.
- ``Activity`` counts what the driver needs to see quiescence: parks, replies handed out, and
  work that waits on something else than a parked call (retrieval: a thread, an embeddings
  API). ``tracked`` wraps such an object so that its coroutine methods count.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..providers.openai_compatible import OpenAICompatibleAPI

#: requests in flight per endpoint: every parked call is "in flight" until its round returns
UNBOUNDED = 1 << 30


class Activity:
    """Counters read by the round driver (all on the event loop's thread)."""

    def __init__(self) -> None:
        self.events = 0
        self.external = 0  # awaits on something other than a parked call, in progress

    def bump(self) -> None:
        self.events += 1

    @contextmanager
    def outside(self) -> Iterator[None]:
        self.external += 1
        self.events += 1
        try:
            yield
        finally:
            self.external -= 1
            self.events += 1


def tracked(target: Any, activity: Activity) -> Any:
    """``target`` with every coroutine method counted as outside work, and the objects those
    return wrapped the same way (a retriever's ``build`` returns the index ``search``-ed)."""
    return _Tracked(target, activity)


class _Tracked:
    def __init__(self, target: Any, activity: Activity) -> None:
        self._target = target
        self._activity = activity

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not inspect.iscoroutinefunction(value):
            return value
        activity = self._activity

        async def call(*args: Any, **kwargs: Any) -> Any:
            with activity.outside():
                out = await value(*args, **kwargs)
            if any(inspect.iscoroutinefunction(getattr(out, n, None))
                   for n in dir(type(out)) if not n.startswith("_")):
                return _Tracked(out, activity)
            return out

        return call


Park = Callable[[str, str, dict[str, Any], bool], Awaitable[dict[str, Any]]]


class BatchAPI(OpenAICompatibleAPI):
    """The OpenAI-compatible provider whose requests become batch lines. Its cache identity
    is the online provider's, so online and batch runs share every cached call."""

    #: a parked call waits for its round: the transport does not report it as stalled
    waits_by_design = True

    def __init__(self, park: Park, model: str, *, base_url: str | None = None,
                 api_key: str | None = None, extra_body: dict[str, Any] | None = None) -> None:
        super().__init__(model, base_url=base_url, api_key=api_key, extra_body=extra_body,
                         max_connections=8)
        self._park = park

    def max_connections(self) -> int:
        return UNBOUNDED

    def endpoint_label(self) -> str:
        return f"batch requests for {self.model}"

    async def _post(self, path: str, body: dict[str, Any], *, structured: bool = False
                    ) -> dict[str, Any]:
        if self.extra_body:
            body = {**body, **self.extra_body}
        key = _call_key() or hashlib.sha256(
            json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()
        return await self._park(key, "/v1" + path, body, structured)


def _call_key() -> str | None:
    from .._cache import CALL_KEY

    return CALL_KEY.get()


class BatchCache:
    """The run store as a call cache, except that a batch reply not handed out yet in this
    process is a miss (see the module docstring). Everything else is the store's."""

    def __init__(self, store: Any, has_results: Callable[[str], bool], handed: set[str]) -> None:
        self._store = store
        self._has_results = has_results
        self._handed = handed  # keys whose batch results this process has started handing out

    def get_call(self, key: str) -> dict[str, Any] | None:
        if key not in self._handed and self._has_results(key):
            return None
        return self._store.get_call(key)

    def put_call(self, key: str, value: dict[str, Any]) -> None:
        self._store.put_call(key, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
