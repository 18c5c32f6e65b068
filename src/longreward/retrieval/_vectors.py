"""Cosine top-k over embedding matrices, shared by the dense and API retrievers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import numpy as np

from longreward.retrieval._base import Hit, RetrievalIndex, cap_k


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), so a dot product is a cosine."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"expected a 2-D array of embeddings, got shape {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def top_k(doc: np.ndarray, queries: np.ndarray, k: int) -> list[list[Hit]]:
    """Best-first cosine hits of each (normalised) query row against (normalised) doc rows."""
    k = cap_k(k, doc.shape[0])
    if k == 0:
        return [[] for _ in range(queries.shape[0])]
    scores = queries @ doc.T
    out: list[list[Hit]] = []
    for row in scores:
        top = np.argpartition(-row, k - 1)[:k] if k < row.shape[0] else np.arange(row.shape[0])
        ordered = sorted(top.tolist(), key=lambda i: (-row[i], i))
        out.append([Hit(int(i), float(row[i])) for i in ordered])
    return out


class VectorIndex(RetrievalIndex):
    """Chunk embeddings plus a function that embeds queries with the same model."""

    def __init__(
        self,
        doc_vectors: np.ndarray,
        embed_queries: Callable[[list[str]], Awaitable[np.ndarray]],
    ) -> None:
        self._doc = normalize(doc_vectors) if len(doc_vectors) else np.zeros((0, 1), np.float32)
        self._embed_queries = embed_queries
        self.size = int(self._doc.shape[0])

    async def search(self, queries: list[str], k: int) -> list[list[Hit]]:
        if not queries:
            return []
        if cap_k(k, self.size) == 0:
            return [[] for _ in queries]
        return top_k(self._doc, normalize(await self._embed_queries(queries)), k)
