"""The provider interface: one abstract async method.

A provider only turns messages into a ``ModelOutput`` (or raises a ``ModelError``).
Retries, rate limits, caching and accounting live in ``ModelClient`` (``_client.py``),
never in a provider.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ._types import GenerateConfig, JsonSchema, Message, ModelOutput, PermanentError, StructuredMode


class ModelAPI(ABC):
    #: registry name, e.g. "openai_compatible"; part of the cache key
    provider: str = ""
    #: the rungs of the structured-output ladder this provider can send, best first. The
    #: default: ``generate`` either honours ``json_schema`` or raises
    #: ``SchemaUnsupportedError`` (then the client asks for tagged text). A provider that
    #: lists the json_object rungs takes ``generate(..., response_format=rung)``, and the
    #: client probes which rung an endpoint accepts.
    structured_modes: tuple[StructuredMode, ...] = ("json_schema", "text")
    #: where the requests go, for servers; part of the per-endpoint records, never of the
    #: cache key
    base_url: str | None = None

    def __init__(self, model: str) -> None:
        self.model = model

    @abstractmethod
    async def generate(
        self,
        messages: list[Message],
        config: GenerateConfig,
        json_schema: JsonSchema | None = None,
    ) -> ModelOutput:
        """One chat request. ``json_schema`` asks for a structured reply; a provider that
        cannot honour it raises ``SchemaUnsupportedError``."""

    async def complete_text(self, prompt: str, config: GenerateConfig) -> ModelOutput:
        """Plain completion (no chat template applied by the server). Used by sampling."""
        raise PermanentError(f"provider {self.provider!r} has no completion-style API; use chat style")

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Embedding vectors, one per text, in input order. Used by API retrieval."""
        raise PermanentError(f"provider {self.provider!r} has no embeddings API")

    def max_connections(self) -> int:
        """Default concurrency cap for this provider (per endpoint)."""
        return 16

    def endpoint_label(self) -> str:
        """How messages name this endpoint (no secrets)."""
        return f"{self.base_url} (model {self.model})" if self.base_url else (
            f"the {self.provider} model {self.model}")

    def cache_identity(self) -> dict[str, Any]:
        """What identifies this model in the cache key. Never includes secrets."""
        return {"provider": self.provider, "model": self.model}

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
