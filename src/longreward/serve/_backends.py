"""Where the in-process adapters (verl, TRL) get their rewards: a ``RewardService`` in this
process (``LocalRewards``), or a running ``longreward serve`` (``RemoteRewards``).

Several processes may each run a ``LocalRewards`` on the same serve config (verl's reward
workers, its ``prime`` manager's process pool): they share the run directory, its judge-call
cache, the calls in flight and the judged rewards (``RewardService``), with no lock error.

Both score synchronously (verl's thread-pool reward managers) and asynchronously (verl's
reward loop, TRL's async reward functions), from any thread or event loop: the scorer keeps
one home event loop and runs its judge calls there (``LongReward`` docs). ``fill`` and
``timeout`` are the service's: what a failed item receives, and its deadline.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from ..errors import UsageError
from ._options import DEFAULT_TOKEN_ENV, ServeOptions, load_serve_options
from ._service import Fill, ItemResult, RewardService, ScoreItem

CONFIG_ENV = "LONGREWARD_SERVE_CONFIG"
URL_ENV = "LONGREWARD_SERVE_URL"

#: bounded retries of a remote request refused with 503 (busy) or a dropped connection
_REMOTE_TRIES = 8


class Rewards(Protocol):
    fallback_reward: float | None
    #: deadlines of the number-only protocols (``ServeOptions.deadlines``)
    deadlines: dict[str, float]

    def score(self, items: list[ScoreItem], *, fill: Fill = "null",
              timeout: float | None = None) -> list[ItemResult]: ...

    async def ascore(self, items: list[ScoreItem], *, fill: Fill = "null",
                     timeout: float | None = None) -> list[ItemResult]: ...


class LocalRewards:
    """A ``RewardService`` in this process (module doc)."""

    def __init__(self, options: ServeOptions | None = None, *,
                 service: RewardService | None = None) -> None:
        self.service = service or RewardService(options)
        self.service.open()
        self.fallback_reward = self.service.options.fallback_reward
        self.deadlines = self.service.options.deadlines.model_dump()
        # All scoring runs on the scorer's home loop, started here in a background thread
        # (the scorer's own bridge for synchronous code): a caller's loop may end
        # (``asyncio.run`` per batch) without taking the judge's connections with it.
        self._loop = self.service.scorer._run_sync(_current_loop())

    def score(self, items: list[ScoreItem], *, fill: Fill = "null",
              timeout: float | None = None) -> list[ItemResult]:
        return self.service.scorer._run_sync(
            self.service.score(items, fill=fill, timeout=timeout)).results

    async def ascore(self, items: list[ScoreItem], *, fill: Fill = "null",
                     timeout: float | None = None) -> list[ItemResult]:
        future = asyncio.run_coroutine_threadsafe(
            self.service.score(items, fill=fill, timeout=timeout), self._loop)
        return (await asyncio.wrap_future(future)).results

    def close(self) -> None:
        """Release the run directory and the judge's connections, stop the loop."""
        try:
            self.service.scorer._run_sync(self.service.aclose())
        finally:
            self.service.scorer.close()


async def _current_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def _item_json(item: ScoreItem, i: int) -> dict[str, Any]:
    out = {"id": item.id or str(i), "response": item.response}
    for k in ("prompt_id", "context", "query", "error"):
        v = getattr(item, k)
        if v is not None:
            out[k] = v
    return out


class RemoteRewards:
    """A running ``longreward serve`` reached over its native ``/score`` route."""

    def __init__(self, url: str, *, token_env: str = DEFAULT_TOKEN_ENV,
                 timeout: float | None = None) -> None:
        import httpx

        self.url = url.rstrip("/")
        token = os.environ.get(token_env)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = httpx.Timeout(30.0, read=timeout)
        with httpx.Client(timeout=self._timeout, headers=self._headers) as client:
            try:
                health = client.get(f"{self.url}/health")
                health.raise_for_status()
            except httpx.HTTPError as exc:
                raise UsageError(f"no longreward server at {self.url}: {exc}. Fix: start it "
                                 "with `longreward serve --config serve.yaml`, or correct "
                                 f"${URL_ENV}") from None
        info = health.json()
        self.fallback_reward = info.get("fallback_reward")
        self.deadlines = dict(info.get("deadlines") or {})

    def score(self, items: list[ScoreItem], *, fill: Fill = "null",
              timeout: float | None = None) -> list[ItemResult]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.ascore(items, fill=fill, timeout=timeout))
        raise UsageError("RemoteRewards.score blocks, so it cannot run on an event loop's "
                         "thread; await ascore(...) there instead")

    async def ascore(self, items: list[ScoreItem], *, fill: Fill = "null",
                     timeout: float | None = None) -> list[ItemResult]:
        import httpx

        # Items a parser refused are sent too: the server says why, and fills them as it
        # fills any other failure (the neutral reward of their prompt).
        body: dict[str, Any] = {"items": [_item_json(it, i) for i, it in enumerate(items)],
                                "fill": fill}
        if timeout is not None:
            body["deadline"] = timeout
        if not items:
            return []
        async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as client:
            for attempt in range(_REMOTE_TRIES):
                wait = self._wait(attempt, None)
                try:
                    resp = await client.post(f"{self.url}/score", json=body)
                except httpx.TransportError:
                    if attempt + 1 == _REMOTE_TRIES:
                        raise
                else:
                    if resp.status_code != 503 or attempt + 1 == _REMOTE_TRIES:
                        return [ItemResult.from_dict(d) for d in self._json(resp)["items"]]
                    wait = self._wait(attempt, resp.headers.get("retry-after"))
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    @staticmethod
    def _wait(attempt: int, retry_after: str | None) -> float:
        try:
            return min(float(retry_after), 60.0) if retry_after else min(2.0 ** attempt, 30.0)
        except ValueError:
            return min(2.0 ** attempt, 30.0)

    def _json(self, resp: Any) -> dict[str, Any]:
        if resp.status_code != 200:
            try:
                detail = resp.json().get("error") or resp.text
            except ValueError:
                detail = resp.text
            raise UsageError(f"{self.url}/score answered {resp.status_code}: {detail}")
        return resp.json()


_cache: dict[tuple[int, str | None, str | None], Rewards] = {}
_cache_lock = threading.Lock()


def rewards_for(config: str | os.PathLike[str] | None = None,
                url: str | None = None) -> Rewards:
    """The reward backend for ``config`` (a serve.yaml: in-process) or ``url`` (a running
    server), defaulting to ``$LONGREWARD_SERVE_URL`` then ``$LONGREWARD_SERVE_CONFIG``.
    One per process and argument pair: every call of a trainer's reward function shares
    the judge connections, the per-document work and the run store. A process forked from
    one that had a backend (verl's ``prime`` process pool) makes its own: the parent's
    event-loop thread does not exist in the child."""
    if config is None and url is None:
        url = os.environ.get(URL_ENV) or None
        config = os.environ.get(CONFIG_ENV) or None
    if config is None and url is None:
        raise UsageError("no reward service: pass config=serve.yaml (score in this process) "
                         "or url=http://HOST:PORT (a running `longreward serve`), or set "
                         f"${CONFIG_ENV} or ${URL_ENV}")
    key = (os.getpid(), str(Path(config).resolve()) if config is not None else None, url)
    with _cache_lock:
        backend = _cache.get(key)
        if backend is None:
            backend = (RemoteRewards(url) if url is not None
                       else LocalRewards(load_serve_options(config)))
            _cache[key] = backend
        return backend
