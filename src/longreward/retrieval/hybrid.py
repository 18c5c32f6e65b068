"""Hybrid retrieval: reciprocal rank fusion (RRF) of several retrievers.

RRF (Cormack et al., 2009) adds ``1 / (k_rrf + rank)`` over the rankings a chunk appears in.
It needs no score calibration between BM25 and cosine scores, which live on unrelated scales.
Not in the paper (which used embeddings only); BM25 catches exact names and numbers that
embeddings blur, and embeddings catch paraphrases that BM25 misses.
"""

from __future__ import annotations

import asyncio

from longreward.retrieval._base import Hit, RetrievalIndex, Retriever, cap_k

__all__ = ["HybridRetriever"]


class _HybridIndex(RetrievalIndex):
    def __init__(self, indexes: list[RetrievalIndex], k_rrf: int, candidates: int, size: int):
        self._indexes = indexes
        self._k_rrf = k_rrf
        self._candidates = candidates
        self.size = size

    async def search(self, queries: list[str], k: int) -> list[list[Hit]]:
        k = cap_k(k, self.size)
        depth = max(k, self._candidates)
        per_index = await asyncio.gather(*(ix.search(queries, depth) for ix in self._indexes))
        fused: list[list[Hit]] = []
        for q in range(len(queries)):
            scores: dict[int, float] = {}
            for ranking in per_index:
                for rank, hit in enumerate(ranking[q], start=1):
                    scores[hit.chunk] = scores.get(hit.chunk, 0.0) + 1.0 / (self._k_rrf + rank)
            best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
            fused.append([Hit(chunk, score) for chunk, score in best])
        return fused


class HybridRetriever(Retriever):
    """Fuses the rankings of ``retrievers`` (each searched ``candidates`` deep) with RRF."""

    name = "hybrid"

    def __init__(self, retrievers: list[Retriever], k_rrf: int = 60, candidates: int = 50) -> None:
        if not retrievers:
            raise ValueError("HybridRetriever needs at least one retriever")
        self.retrievers = list(retrievers)
        self.k_rrf = k_rrf
        self.candidates = candidates

    @property  # type: ignore[override]
    def embedding_inputs(self) -> int:
        """Texts sent to embedders by all member retrievers."""
        return sum(r.embedding_inputs for r in self.retrievers)

    async def _build(self, chunks: list[str]) -> RetrievalIndex:
        indexes = await asyncio.gather(*(r.build(chunks) for r in self.retrievers))
        return _HybridIndex(list(indexes), self.k_rrf, self.candidates, len(chunks))

    def __repr__(self) -> str:
        return f"HybridRetriever({self.retrievers!r}, k_rrf={self.k_rrf})"
