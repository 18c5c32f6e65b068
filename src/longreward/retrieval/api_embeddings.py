"""Embeddings from an OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, Zhipu, ...).

The paper retrieved evidence with Zhipu's embedding-2 through its API (LongReward §4.1); any
endpoint speaking the OpenAI embeddings protocol works here, chosen by ``base_url``.

Retries: the judge's client owns retries for judge calls; embeddings do not go through it (they
are not chat completions and are not cached), so this module keeps a deliberately small loop.
It reuses the judge provider's error classification (``map_openai_error``: retryable vs
permanent, ``Retry-After``, key redaction) and key resolution, so neither rule is copied.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import numpy as np

from longreward.retrieval._base import RetrievalIndex, Retriever
from longreward.retrieval._vectors import VectorIndex

__all__ = ["APIEmbeddingRetriever"]

log = logging.getLogger(__name__)


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
        from longreward.judge.providers.openai_compatible import resolve_api_key

        if batch_size < 1 or max_concurrency < 1:
            raise ValueError("batch_size and max_concurrency must be at least 1")
        self.model = model
        self.base_url = base_url
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._api_key = resolve_api_key(api_key)
        self._client: Any = None
        self._rng = random.Random()

    def _get_client(self) -> Any:
        if self._client is None:
            import openai

            # max_retries=0: the SDK would otherwise retry on its own, under our loop.
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key, base_url=self.base_url, timeout=self.timeout, max_retries=0
            )
        return self._client

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` in input order (counted in ``embedding_inputs``)."""
        self.embedding_inputs += len(texts)
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        # Some servers reject empty strings; a single space embeds as "nothing" everywhere.
        texts = [t if t.strip() else " " for t in texts]
        semaphore = asyncio.Semaphore(self.max_concurrency)
        batches = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]

        async def run(batch: list[str]) -> list[list[float]]:
            async with semaphore:
                return await self._embed_batch(batch)

        parts = await asyncio.gather(*(run(b) for b in batches))
        return np.asarray([vec for part in parts for vec in part], dtype=np.float32)

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        from longreward.judge._types import RetryableError
        from longreward.judge.providers.openai_compatible import map_openai_error

        client = self._get_client()
        for attempt in range(self.max_retries + 1):
            try:
                # "float" explicitly: the SDK may ask for base64, which not every
                # OpenAI-compatible server implements.
                response = await client.embeddings.create(
                    model=self.model, input=batch, encoding_format="float"
                )
            except Exception as exc:  # classified just below; nothing is swallowed
                error = map_openai_error(exc, secret=self._api_key)
                if not isinstance(error, RetryableError) or attempt == self.max_retries:
                    raise error from exc
                # Full jitter, but never sooner than the server's Retry-After.
                delay = self._rng.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))
                if error.retry_after is not None:
                    delay = max(delay, error.retry_after)
                log.warning(
                    "embedding request failed, retrying in %.1fs (%d/%d): %s",
                    delay,
                    attempt + 1,
                    self.max_retries,
                    error,
                )
                await asyncio.sleep(delay)
                continue
            data = sorted(response.data, key=lambda d: d.index)
            if len(data) != len(batch):
                raise ValueError(
                    f"embedding endpoint returned {len(data)} vectors for {len(batch)} inputs "
                    f"(model {self.model!r}); check that the model is an embedding model"
                )
            return [list(d.embedding) for d in data]
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _build(self, chunks: list[str]) -> RetrievalIndex:
        return VectorIndex(await self.embed(chunks), self.embed)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"APIEmbeddingRetriever({self.model!r}, base_url={self.base_url!r})"
