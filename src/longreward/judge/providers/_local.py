"""``LocalModelAPI``: the one base of providers that run a model in this process (llama.cpp,
vLLM's offline engine, transformers).

Such an engine is loaded lazily, on the first call (so building the options of a run never
loads weights), decodes synchronously and serves one call at a time. So every call runs in a
worker thread (``asyncio.to_thread``: the event loop keeps serving other work) under a
per-instance lock, with the engine loaded under that lock, and ``max_connections`` is 1. The
engine's errors are sorted here too: the exceptions a provider names are the request's fault
(never retried), and among them the ones whose text says the prompt is longer than the window
become ``ContextTooLongError``. A subclass supplies ``_load`` and the two blocking calls.
"""

from __future__ import annotations

import asyncio
import threading
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

from .._provider import ModelAPI
from .._registry import check_requirements
from .._types import (
    ContextTooLongError,
    GenerateConfig,
    JsonSchema,
    Message,
    ModelError,
    ModelOutput,
    PermanentError,
    SchemaUnsupportedError,
)

#: new tokens per answer when a request gives no ``max_tokens``
DEFAULT_MAX_NEW_TOKENS = 512

T = TypeVar("T")


class LocalModelAPI(ModelAPI):
    #: engine exceptions that are the request's fault: a ``PermanentError``, never retried
    request_errors: tuple[type[Exception], ...] = ()
    #: substrings of such an error's text that mean "the prompt does not fit the window"
    context_error_markers: tuple[str, ...] = ()
    #: added to a context-too-long message: how to get a larger window
    context_hint: str = ""
    #: ``generate`` honours ``json_schema`` (decoding constrained by it); otherwise a schema
    #: request raises ``SchemaUnsupportedError`` and the client asks for tagged text
    constrains_decoding: bool = False

    def __init__(self, model: str) -> None:
        super().__init__(model)
        # Fail at construction, not at the first request, so a run does not start only to
        # crash once the prompts are read. Cheap: nothing heavy is imported yet.
        check_requirements(self.provider)
        self._engine: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

    def max_connections(self) -> int:
        return 1  # one engine, one call at a time (the engine batches internally if it can)

    # ------------------------------------------------------------------ the engine

    @abstractmethod
    def _load(self) -> Any:
        """Load the engine (called once, under the lock, in a worker thread)."""

    def _loaded(self) -> Any:
        if self._engine is None:
            self._engine = self._load()
        return self._engine

    def with_engine(self, fn: Callable[[Any], T]) -> T:
        """``fn(engine)`` under the lock, loading the engine first if needed. Blocking."""
        with self._lock:
            return fn(self._loaded())

    def _release(self, engine: Any) -> None:  # noqa: B027 - optional hook
        """Free what the engine holds beyond memory (called under the lock)."""

    async def aclose(self) -> None:
        # Waits for a call in flight; in a thread so the event loop is not blocked meanwhile.
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._release(self._engine)
            self._engine = None

    # ------------------------------------------------------------------ calls

    @abstractmethod
    def _chat(self, engine: Any, messages: list[dict[str, str]], config: GenerateConfig,
              json_schema: JsonSchema | None) -> ModelOutput:
        """One chat request on the loaded engine (blocking, under the lock)."""

    @abstractmethod
    def _complete(self, engine: Any, prompt: str, config: GenerateConfig) -> ModelOutput:
        """One plain completion on the loaded engine (blocking, under the lock)."""

    async def generate(
        self,
        messages: list[Message],
        config: GenerateConfig,
        json_schema: JsonSchema | None = None,
    ) -> ModelOutput:
        if json_schema is not None and not self.constrains_decoding:
            raise SchemaUnsupportedError(
                f"the in-process {self.provider} provider does not constrain decoding to a "
                "JSON schema")
        convo = [m.model_dump() for m in messages]
        return await self._call(lambda engine: self._chat(engine, convo, config, json_schema))

    async def complete_text(self, prompt: str, config: GenerateConfig) -> ModelOutput:
        return await self._call(lambda engine: self._complete(engine, prompt, config))

    async def _call(self, fn: Callable[[Any], ModelOutput]) -> ModelOutput:
        return await asyncio.to_thread(self._run, fn)

    def _run(self, fn: Callable[[Any], ModelOutput]) -> ModelOutput:
        try:
            return self.with_engine(fn)
        except ModelError:
            raise
        except self.request_errors as exc:
            raise self._request_error(exc) from exc

    def _request_error(self, exc: Exception) -> ModelError:
        text = str(exc)
        if any(marker in text for marker in self.context_error_markers):
            return ContextTooLongError(f"{text}; {self.context_hint}" if self.context_hint
                                       else text)
        return PermanentError(f"{self.provider}: {text}")
