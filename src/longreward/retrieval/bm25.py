"""BM25 over chunks, for English and Chinese, in memory (the default retriever).

bm25s' own splitter keeps a run of Chinese characters as one "word", so a Chinese query would
only match a chunk holding the exact same run. We tokenise ourselves: lower-cased Latin words
(stop words dropped, stemmed when PyStemmer is installed) and, for CJK runs, character
unigrams plus bigrams, the usual word-segmenter-free scheme for Chinese IR. Terms are mapped
to ids and the ids passed to bm25s, which then never tokenises anything itself.

Indexing and search are CPU-bound but take milliseconds (a 64k-token document, ~600 chunks,
indexes in well under a second), so they run inline in the async methods: a thread hop would
cost more than it saves and the judge calls that dominate a run are not held up noticeably.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from longreward.retrieval._base import Hit, RetrievalIndex, Retriever, cap_k

__all__ = ["BM25Retriever", "bm25_terms"]

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_TERM_RE = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_CJK_CHAR_RE = re.compile(rf"[{_CJK}]")

_EN_STOPWORDS = frozenset(
    """
    a an and are as at be been being but by can could did do does doing for from had has have
    having he her here hers him his how i if in into is it its itself just me more most my no
    nor not of off on once only or other our ours out over own same she should so some such
    than that the their theirs them then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you
    your yours s t
    """.split()  # noqa: SIM905 - a word list reads and diffs better as text
)
# Function characters that carry no topic; they are dropped as unigrams only, since bigrams
# that contain them (e.g. 目的) still discriminate.
_ZH_STOP_CHARS = frozenset("的了是在和与及或也就都而之其这那你我他她它们个着被把")


def _plain_stem(word: str) -> str:
    """Fallback when PyStemmer is absent: fold the commonest English plural only."""
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _load_stemmer(language: str | None) -> Callable[[str], str]:
    if language not in (None, "en"):
        return lambda w: w
    try:
        import Stemmer  # PyStemmer: optional, improves matching of paraphrases
    except ImportError:
        return _plain_stem
    stemmer = Stemmer.Stemmer("english")
    return stemmer.stemWord  # type: ignore[no-any-return]


def bm25_terms(text: str, stem: Callable[[str], str] = _plain_stem) -> list[str]:
    """Index terms of ``text``: stemmed Latin words and CJK unigrams + bigrams."""
    terms: list[str] = []
    for run in _TERM_RE.findall(text.lower()):
        if _CJK_CHAR_RE.match(run):
            terms.extend(ch for ch in run if ch not in _ZH_STOP_CHARS)
            terms.extend(run[i : i + 2] for i in range(len(run) - 1))
        elif run not in _EN_STOPWORDS:
            terms.append(stem(run))
    return terms


class _BM25Index(RetrievalIndex):
    def __init__(self, model: Any, vocab: dict[str, int], size: int, stem: Callable[[str], str]):
        self._model = model
        self._vocab = vocab
        self._stem = stem
        self.size = size

    async def search(self, queries: list[str], k: int) -> list[list[Hit]]:
        k = cap_k(k, self.size)
        results: list[list[Hit]] = []
        for query in queries:
            ids = [self._vocab[t] for t in bm25_terms(query, self._stem) if t in self._vocab]
            if k == 0 or not ids:
                results.append([])
                continue
            scores = np.asarray(self._model.get_scores(ids), dtype=np.float64)
            top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
            # Stable order: higher score first, earlier chunk first on ties.
            top = sorted(top.tolist(), key=lambda i: (-scores[i], i))
            # A chunk that shares no term with the query scores 0: it is not evidence.
            results.append([Hit(int(i), float(scores[i])) for i in top if scores[i] > 0])
        return results


class _EmptyIndex(RetrievalIndex):
    size = 0

    async def search(self, queries: list[str], k: int) -> list[list[Hit]]:
        return [[] for _ in queries]


class BM25Retriever(Retriever):
    """Lexical retrieval with BM25 (bm25s, Lucene variant, in memory).

    ``language`` picks the stemmer for Latin words: ``None``/``"en"`` stems English when
    PyStemmer is installed; other values disable stemming. CJK text is handled either way.
    """

    name = "bm25"

    def __init__(self, language: str | None = None, *, k1: float = 1.5, b: float = 0.75) -> None:
        self.language = language
        self.k1 = k1
        self.b = b
        self._stem = _load_stemmer(language)

    async def _build(self, chunks: list[str]) -> RetrievalIndex:
        if not chunks:
            return _EmptyIndex()
        import bm25s

        vocab: dict[str, int] = {}
        corpus_ids: list[list[int]] = []
        for chunk in chunks:
            corpus_ids.append(
                [vocab.setdefault(t, len(vocab)) for t in bm25_terms(chunk, self._stem)]
            )
        # bm25s adds an empty token to the vocabulary it keeps for chunks without terms; our
        # own `vocab` never maps a query term to it.
        model = bm25s.BM25(k1=self.k1, b=self.b)
        model.index(
            bm25s.tokenization.Tokenized(ids=corpus_ids, vocab=dict(vocab)), show_progress=False
        )
        return _BM25Index(model, vocab, len(chunks), self._stem)

    def __repr__(self) -> str:
        return f"BM25Retriever(language={self.language!r})"
