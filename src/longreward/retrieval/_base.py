"""Retrieval interfaces: a retriever builds one index per document; the index answers queries.

Faithfulness retrieves the top-5 128-token chunks per statement (LongReward §3.2). All
candidate answers to one prompt share a document, so the scorer builds the index once and
searches it for every answer's statements. The counters below let callers and benchmarks
check that this sharing really happens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = ["Hit", "RetrievalIndex", "Retriever"]


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: its position in the list given to ``build``, and its score."""

    chunk: int
    score: float


class RetrievalIndex(ABC):
    """A searchable index over one document's chunks."""

    #: Number of chunks indexed.
    size: int = 0

    @abstractmethod
    async def search(self, queries: list[str], k: int) -> list[list[Hit]]:
        """Best-first hits for each query; at most ``min(k, size)`` per query.

        Lexical indexes may return fewer when fewer chunks share a term with the query.
        """


class Retriever(ABC):
    """Builds a :class:`RetrievalIndex` from a list of chunk texts.

    Counters (instance attributes, starting at 0):

    - ``index_builds``: calls to :meth:`build`;
    - ``embedding_inputs``: texts sent to an embedding model, documents and queries.
    """

    name: str = "retriever"
    index_builds: int = 0
    embedding_inputs: int = 0

    async def build(self, chunks: list[str]) -> RetrievalIndex:
        """Index ``chunks`` (the texts of one document's chunks, in order)."""
        self.index_builds += 1
        return await self._build(list(chunks))

    @abstractmethod
    async def _build(self, chunks: list[str]) -> RetrievalIndex:
        """Subclasses index the chunks here; :meth:`build` keeps the counter."""


def cap_k(k: int, size: int) -> int:
    """``k`` limited to the number of chunks (and never negative)."""
    return max(0, min(k, size))
