"""CPU time to prepare one 64k-token document for scoring, against naive baselines.

Measures, on one core: sentence splitting, tokenizing, chunking at 128 and 4096 tokens, and
building a BM25 index over the 128-token chunks, then searching it with 10 answers' worth of
statements. Two baselines are measured in the same run:

- chunking by re-tokenizing each growing window from scratch (what a loop around
  ``tokenizer(text)`` does), against one tokenization plus windows over the span array;
- building the BM25 index once per answer (10 answers), against once per document.

Usage::

    python benchmarks/chunk_index.py [PATH_TO_JSONL] [--tokens 64000] [--answers 10]

PATH defaults to ../shared/data/longreward_example/sft.jsonl (field ``context``), repeated to
reach the token target; synthetic text is used when the file is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longreward.retrieval import BM25Retriever
from longreward.text import chunk_text, get_tokenizer, split_sentences

DEFAULT_PATH = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DEFAULT_PATH = (DEFAULT_PATH / "longreward_example" / "sft.jsonl").resolve()


def load_document(path: Path, target_tokens: int) -> tuple[str, str]:
    tok = get_tokenizer(None)
    if path.is_file():
        with path.open(encoding="utf-8") as f:
            base = json.loads(f.readline())["context"]
        source = str(path)
    else:
        rng = random.Random(0)
        words = ["river", "bridge", "council", "market", "teacher", "value", "policy", "power"]
        base = "\n\n".join(
            " ".join(rng.choice(words) for _ in range(60)).capitalize() + "." for _ in range(200)
        )
        source = "synthetic text (file not found)"
    parts = [base]
    per_copy = tok.count(base)
    while per_copy * len(parts) < target_tokens:
        parts.append(base)
    return "\n\n".join(parts), source


def cpu_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best CPU time over ``repeat`` runs (best-of filters out scheduler noise)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    return best, result


def naive_chunk(text: str, chunk_tokens: int) -> list[str]:
    """Baseline: grow each window word by word, re-tokenizing the whole window every time."""
    tok = get_tokenizer(None)
    words = text.split(" ")
    chunks, current = [], ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if tok.count(candidate) > chunk_tokens and current:
            chunks.append(current)
            candidate = word
        current = candidate
    if current:
        chunks.append(current)
    return chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--tokens", type=int, default=64_000)
    parser.add_argument("--answers", type=int, default=10)
    parser.add_argument("--statements", type=int, default=20, help="statements per answer")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    document, source = load_document(args.path, args.tokens)
    tok = get_tokenizer(None)
    n_tokens = tok.count(document)
    print(f"document: {source}: {len(document):,} chars, {n_tokens:,} regex tokens")

    rows: list[tuple[str, float]] = []
    t, sentences = cpu_time(lambda: split_sentences(document), args.repeat)
    rows.append((f"split_sentences ({len(sentences)} sentences)", t))
    t, _ = cpu_time(lambda: tok.spans(document), args.repeat)
    rows.append(("tokenize (regex spans)", t))
    t, chunks128 = cpu_time(lambda: chunk_text(document, chunk_tokens=128), args.repeat)
    rows.append((f"chunk 128 ({len(chunks128)} chunks)", t))
    t, chunks4k = cpu_time(lambda: chunk_text(document, chunk_tokens=4096), args.repeat)
    rows.append((f"chunk 4096 ({len(chunks4k)} chunks)", t))

    texts = [c.text for c in chunks128]
    retriever = BM25Retriever()
    t_build, index = cpu_time(lambda: asyncio.run(retriever.build(texts)), args.repeat)
    rows.append(("BM25 index over 128-token chunks", t_build))

    # Statements: sentences drawn from the document stand in for the answers' statements.
    rng = random.Random(0)
    answers = [rng.sample(sentences, args.statements) for _ in range(args.answers)]
    t_search, _ = cpu_time(lambda: [asyncio.run(index.search(a, 5)) for a in answers], args.repeat)
    rows.append((f"BM25 search, {args.answers} answers x {args.statements} statements", t_search))

    for name, seconds in rows:
        print(f"  {name:<52} {seconds * 1000:9.1f} ms CPU")
    shared = sum(s for _, s in rows[2:4]) + t_build + t_search
    print(f"  {'total (split+chunk+index+search)':<52} {(rows[0][1] + shared) * 1000:9.1f} ms CPU")

    print("baselines (same run):")
    t_naive, naive = cpu_time(lambda: naive_chunk(document, 128), 1)
    label = f"naive re-tokenizing chunker, 128 ({len(naive)} chunks)"
    print(f"  {label:<52} {t_naive * 1000:9.1f} ms CPU  {t_naive / rows[2][1]:5.1f}x chunk 128")

    def per_answer() -> None:
        for statements in answers:
            ix = asyncio.run(BM25Retriever().build(texts))
            asyncio.run(ix.search(statements, 5))

    t_per_answer, _ = cpu_time(per_answer, args.repeat)
    t_once = t_build + t_search
    label = f"BM25 index once per answer ({args.answers} builds) + search"
    print(
        f"  {label:<52} {t_per_answer * 1000:9.1f} ms CPU  {t_per_answer / t_once:5.1f}x "
        "index once per document + search"
    )
    print(f"retriever counters: index_builds={retriever.index_builds} (repeats={args.repeat})")


if __name__ == "__main__":
    main()
