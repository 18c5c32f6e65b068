"""Dense retrieval with a local sentence-transformers model (``pip install 'longreward[dense]'``).

The paper used Zhipu's embedding-2 through an API (see :mod:`api_embeddings`); this is the
offline alternative. ``sentence_transformers`` is imported when the retriever is created, so
naming "dense" without the extra fails at once with the fix, not halfway through a run.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np

from longreward.errors import MissingDependencyError
from longreward.retrieval._base import RetrievalIndex, Retriever
from longreward.retrieval._vectors import VectorIndex

__all__ = ["DenseRetriever"]


class DenseRetriever(Retriever):
    """Cosine similarity between sentence-transformers embeddings of chunks and queries.

    ``device`` is passed to sentence-transformers as given; ``None`` lets it choose. The
    library never picks a GPU on its own.
    """

    name = "dense"

    def __init__(
        self, model_name_or_path: str, device: str | None = None, batch_size: int = 32
    ) -> None:
        try:
            import sentence_transformers  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError(
                "The dense retriever", "sentence-transformers", "dense"
            ) from exc
        self.model_name_or_path = model_name_or_path
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        # One model instance is not safe to call from several threads at once. A thread lock
        # (not an asyncio one) because encoding runs in worker threads and the retriever may
        # be used from more than one event loop.
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.model_name_or_path, device=self.device)
        return self._model

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` (counted in ``embedding_inputs``)."""
        self.embedding_inputs += len(texts)
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        # Encoding is heavy CPU/GPU work: run it in a thread so judge calls keep flowing.
        return await asyncio.to_thread(self._encode, texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            vectors = self._load().encode(
                texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)

    async def _build(self, chunks: list[str]) -> RetrievalIndex:
        return VectorIndex(await self.embed(chunks), self.embed)

    def __repr__(self) -> str:
        return f"DenseRetriever({self.model_name_or_path!r}, device={self.device!r})"
