"""Judge cost per preference pair: longreward's call pattern vs the LongReward reference code's.

On the example prompt (1 prompt, 10 candidates, a 41k-character document) this scores all
candidates with longreward through a counting in-process judge, and computes the reference
code's call pattern on the same inputs and the same statements:

- per answer: helpfulness, logicality, statement extraction, one grading call per statement
  (with its 5 evidence chunks), completeness coverage; the whole document re-embedded plus
  the answer's statements embedded;
- per prompt: one extraction per 4096-token chunk.

Both patterns use longreward's prompt texts, so the prompt-character counts compare call
patterns, not prompt wording. The counting judge splits each answer into statements with
longreward's sentence splitter (what a judge does, roughly), so both sides grade the same
statements; it is not an LLM, so the scores mean nothing — only the counts are measured.

    python benchmarks/judge_cost.py [--data DIR] [--retrieval api]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path

from longreward import LongReward, ScoreOptions
from longreward.io.records import Candidate, PromptRecord
from longreward.judge import (
    GenerateConfig,
    JsonSchema,
    Message,
    ModelAPI,
    ModelClient,
    ModelOutput,
    Usage,
)
from longreward.retrieval import Hit, RetrievalIndex, Retriever
from longreward.reward.dimensions import load_prompt
from longreward.reward.dimensions.faithfulness import format_evidence
from longreward.text import detect_language, split_sentences

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "longreward_example"


class CountingJudge(ModelAPI):
    """Schema-valid replies; statements = the answer's sentences. Counts calls and chars."""

    provider = "bench"

    def __init__(self) -> None:
        super().__init__("counting-judge")
        self.calls = 0
        self.prompt_chars = 0

    async def generate(self, messages: list[Message], config: GenerateConfig,
                       json_schema: JsonSchema | None = None) -> ModelOutput:
        self.calls += 1
        self.prompt_chars += sum(len(m.content) for m in messages)
        title = (json_schema or {}).get("title")
        user = messages[-1].content
        if title == "StatementsReply":
            answer = re.search(r"<answer>\n?(.*?)\n?</answer>", user, re.S)
            reply = {"statements": split_sentences(answer.group(1) if answer else user)}
        elif title == "BatchGradeReply":
            n = len(re.findall(r"^\(\d+\) ", user, re.M))
            reply = {"grades": [{"statement": i + 1, "analysis": "-", "support": "fully"}
                                for i in range(n)]}
        elif title == "GradeReply":
            reply = {"analysis": "-", "support": "fully"}
        elif title == "ExtractionReply":
            reply = {"relevant": True, "points": ["a relevant point"]}
        elif title == "LogicReply":
            reply = {"errors": [], "analysis": "-", "score": 8}
        else:
            reply = {"analysis": "-", "score": 8}
        return ModelOutput(texts=[json.dumps(reply)], usage=Usage(), model=self.model)


class CountingEmbedder(Retriever):
    """Counts embedding inputs the way an embedding retriever would, ranks by word overlap."""

    name = "counting-embedder"

    async def _build(self, chunks: list[str]) -> RetrievalIndex:
        self.embedding_inputs += len(chunks)
        owner = self

        class _Index(RetrievalIndex):
            async def search(self, queries: list[str], k: int) -> list[list[Hit]]:
                owner.embedding_inputs += len(queries)
                out = []
                for q in queries:
                    qw = set(q.lower().split())
                    scored = sorted(((len(qw & set(c.lower().split())), i)
                                     for i, c in enumerate(chunks)), reverse=True)[:k]
                    out.append([Hit(i, float(s)) for s, i in scored])
                return out

        return _Index()


def load(data: Path) -> PromptRecord:
    sft = [json.loads(x) for x in (data / "sft.jsonl").read_text().splitlines()]
    contexts = {str(r["idx"]): r for r in sft}
    rows = [json.loads(x) for x in (data / "sampled_responses.jsonl").read_text().splitlines()]
    pid = rows[0]["idx"].rsplit("-", 1)[0]
    src = contexts[pid]
    return PromptRecord(pid, src["context"], src["query"],
                        [Candidate(r["idx"], r["answer"]) for r in rows])


def reference_pattern(rec: PromptRecord, scorer: LongReward, statements: dict[str, list[str]]
                      ) -> dict[str, int]:
    """Calls, prompt chars and embedding inputs of the reference code's call pattern."""
    lang = detect_language(rec.query + rec.context[:2000])
    work = scorer._prompt_work(rec)
    chunks128 = work.doc.retrieval_chunks
    chunks4k = work.doc.extraction_chunks
    calls = chars = emb = 0

    def add(name: str, **v: str) -> None:
        nonlocal calls, chars
        calls += 1
        chars += sum(len(m.content) for m in load_prompt(name, lang).messages("json", **v))

    for i, c in enumerate(chunks4k):
        add("completeness_extraction", position=f"{i}", chunk=c.text, query=rec.query)
    for cand in rec.candidates:
        add("helpfulness", query=rec.query, response=cand.response)
        add("logicality", query=rec.query, response=cand.response)
        add("faithfulness_statements", query=rec.query, response=cand.response)
        stmts = statements[cand.id]
        emb += len(chunks128) + len(stmts)  # the whole document re-embedded per answer
        for s in stmts:
            evidence = format_evidence([chunks128[j].text for j in range(min(5, len(chunks128)))])
            add("faithfulness_grading", evidence=evidence, statement=s)
        add("completeness_coverage", query=rec.query, points="- [0%–25%] a relevant point",
            response=cand.response)
    return {"judge_calls": calls, "prompt_chars": chars, "embedding_inputs": emb}


async def ours(rec: PromptRecord, retriever: Retriever, batch: int
               ) -> tuple[dict[str, int], LongReward, dict[str, list[str]]]:
    judge = CountingJudge()
    scorer = LongReward(ModelClient(judge), options=ScoreOptions(grade_batch_size=batch),
                        retriever=retriever)
    answers = await scorer.score_prompt(rec)
    statements = {a.id: [s["statement"] for s in a.results["faithfulness"].details["statements"]]
                  for a in answers}
    return ({"judge_calls": judge.calls, "prompt_chars": judge.prompt_chars,
             "embedding_inputs": retriever.embedding_inputs}, scorer, statements)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--grade-batch-size", type=int, nargs="+", default=[1, 8],
                    help="longreward configurations to measure (1 = the paper's per-statement "
                         "grading)")
    ap.add_argument("--retrieval", choices=["bm25", "embedding"], default="embedding",
                    help="embedding: count embedding inputs as a dense/API retriever would; "
                         "bm25: longreward's default, which embeds nothing")
    args = ap.parse_args()
    if not (args.data / "sft.jsonl").exists():
        print(f"example data not found at {args.data}", file=sys.stderr)
        return 2
    rec = load(args.data)
    for batch in args.grade_batch_size:
        if args.retrieval == "bm25":
            from longreward.retrieval import BM25Retriever

            retriever: Retriever = BM25Retriever()
        else:
            retriever = CountingEmbedder()
        mine, scorer, statements = asyncio.run(ours(rec, retriever, batch))
        ref = reference_pattern(rec, scorer, statements)
        n_stmt = sum(len(v) for v in statements.values())
        n_unique = len({s for v in statements.values() for s in v})
        pairs = 1  # one prompt → one (chosen, rejected) pair
        print(f"\nprompt {rec.prompt_id}: {len(rec.context):,} chars, {len(rec.candidates)} "
              f"candidates, {n_stmt} statements ({n_unique} distinct), "
              f"{len(scorer._prompt_work(rec).doc.extraction_chunks)} extraction chunks, "
              f"retrieval={args.retrieval}, grade_batch_size={batch}")
        print(f"{'per preference pair':<22}{'reference':>14}{'longreward':>14}"
              f"{'ratio ref/ours':>16}")
        for key in ("judge_calls", "prompt_chars", "embedding_inputs"):
            r, o = ref[key] / pairs, mine[key] / pairs
            ratio = f"{r / o:.2f}x" if o else ("inf" if r else "-")
            print(f"{key:<22}{r:>14,.0f}{o:>14,.0f}{ratio:>16}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
