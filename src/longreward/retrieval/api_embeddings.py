"""Embeddings from an OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, Zhipu, ...).

The paper retrieved evidence with Zhipu's embedding-2 through its API (LongReward §4.1); any
endpoint speaking the OpenAI embeddings protocol works here, chosen by ``base_url``.

Requests go through ``ModelClient.embed``: the same concurrency cap, limiters, retry loop
(backoff with jitter, ``Retry-After``) and error classification as every judge call. This
module only batches texts and ranks by cosine similarity.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from longreward.retrieval._base import RetrievalIndex, Retriever
from longreward.retrieval._vectors import VectorIndex

__all__ = ["APIEmbeddingRetriever"]


class APIEmbeddingRetriever(Retriever):
    """Cosine retrieval over embeddings from an OpenAI-compatible endpoint.

    The key comes from ``api_key``, else ``LONGREWARD_API_KEY``, else ``OPENAI_API_KEY``, else
    the placeholder ``"EMPTY"`` that local servers accept. It is never logged or repr'd.
    Texts go in batches of ``batch_size``, at most ``max_concurrency`` requests at a time.
    """

    name = "api"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        batch_size: int = 64,
        max_concurrency: int = 4,
        max_retries: int = 3,
        timeout: float = 60.0,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
    ) -> None:
        if batch_size < 1 or max_concurrency < 1:
            raise ValueError("batch_size and max_concurrency must be at least 1")
        self.model = model
        self.base_url = base_url
        self.batch_size = batch_size
        self._client_options: dict[str, Any] = dict(
            max_concurrency=max_concurrency, max_retries=max_retries, timeout=timeout,
            backoff_base=backoff_base, backoff_max=backoff_max)
        self._api_key = api_key
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The ``ModelClient`` (created on first use, inside the running event loop)."""
        if self._client is None:
            from longreward.judge import ModelClient, create_apis

            apis = create_apis("openai_compatible", self.model,
                               base_urls=[self.base_url] if self.base_url else None,
                               api_key=self._api_key)
            self._client = ModelClient(apis, **self._client_options)
        return self._client

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` in input order (counted in ``embedding_inputs``)."""
        self.embedding_inputs += len(texts)
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        # Some servers reject empty strings; a single space embeds as "nothing" everywhere.
        texts = [t if t.strip() else " " for t in texts]
        batches = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        parts = await asyncio.gather(*(self.client.embed(b) for b in batches))
        return np.asarray([vec for part in parts for vec in part], dtype=np.float32)

    async def _build(self, chunks: list[str]) -> RetrievalIndex:
        return VectorIndex(await self.embed(chunks), self.embed)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def __repr__(self) -> str:
        return f"APIEmbeddingRetriever({self.model!r}, base_url={self.base_url!r})"
