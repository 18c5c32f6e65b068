"""Judge cost of one preference pair: pointwise LongReward against listwise selection, on the
example prompt (1 prompt, 10 sampled answers, a 41k-character document: the paper's setting).

Both run through a counting in-process judge (``judge_cost.CountingJudge``: schema-valid
replies, not judgments), so only the call pattern is measured: judge calls and prompt
characters per pair, for pointwise scoring (``grade_batch_size`` 1, the paper's per-statement
grading, and 8) and for listwise selection with groups of 4 and of 10, with the whole document
and with evidence excerpts under a token budget. The counting judge's listwise verdict is
order-independent (the longest answer best, the shortest worst), so both orders agree and no
call is repeated; a real judge that disagrees with itself costs the same calls and gives no
pair.

    python benchmarks/listwise_cost.py [--data DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from judge_cost import DEFAULT_DATA, CountingJudge, load, ours  # noqa: E402

from longreward import ListwiseOptions, ModelClient, select_listwise  # noqa: E402
from longreward.judge import GenerateConfig, JsonSchema, Message, ModelOutput, Usage  # noqa: E402
from longreward.retrieval import BM25Retriever  # noqa: E402
from longreward.reward.dimensions import JudgeSettings  # noqa: E402

_SHOWN = re.compile(r"Answer ([A-Z]):\n<answer_[a-z]_[a-z]{16}>\n(.*?)\n</answer_[a-z]_[a-z]{16}>",
                    re.S)


class ListwiseCounting(CountingJudge):
    """Counts like ``CountingJudge``; a listwise request gets the longest answer as best and
    the shortest as worst (the same in both orders), with the request's verdict code."""

    async def generate(self, messages: list[Message], config: GenerateConfig,
                       json_schema: JsonSchema | None = None) -> ModelOutput:
        if (json_schema or {}).get("title") != "ListwiseReply":
            return await super().generate(messages, config, json_schema)
        self.calls += 1
        self.prompt_chars += sum(len(m.content) for m in messages)
        shown = _SHOWN.findall(messages[-1].content)
        ranked = sorted(shown, key=lambda x: (len(x[1]), x[1]))
        code = json_schema["properties"]["verdict_code"]["const"]  # type: ignore[index]
        reply = {"verdict_code": code, "analysis": "-", "best": ranked[-1][0],
                 "worst": ranked[0][0]}
        return ModelOutput(texts=[json.dumps(reply)], usage=Usage(), model=self.model)


async def listwise(rec, options: ListwiseOptions) -> dict[str, object]:
    judge = ListwiseCounting()
    settings = JudgeSettings(client=ModelClient(judge), generate=GenerateConfig())
    sel = await select_listwise(settings, context=rec.context, query=rec.query,
                                answers=[c.response for c in rec.candidates], options=options)
    views = sorted({g.view for r in sel.rounds for g in r})
    return {"judge_calls": judge.calls, "prompt_chars": judge.prompt_chars,
            "rounds": len(sel.rounds), "views": views,
            "chosen": rec.candidates[sel.chosen].id if sel.chosen is not None else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args()
    if not (args.data / "sft.jsonl").exists():
        print(f"example data not found at {args.data}", file=sys.stderr)
        return 2
    rec = load(args.data)
    print(f"prompt {rec.prompt_id}: {len(rec.context):,} chars, {len(rec.candidates)} answers")
    print(f"{'method':<44}{'judge calls':>12}{'prompt chars':>14}")
    for batch in (1, 8):
        mine, _, _ = asyncio.run(ours(rec, BM25Retriever(), batch))
        print(f"{f'pointwise, grade_batch_size={batch}':<44}{mine['judge_calls']:>12,}"
              f"{mine['prompt_chars']:>14,}")
    for name, opts in [("listwise k=4, whole document", ListwiseOptions(group_size=4)),
                       ("listwise k=10, whole document", ListwiseOptions(group_size=10)),
                       ("listwise k=4, max_prompt_tokens=8000",
                        ListwiseOptions(group_size=4, max_prompt_tokens=8000)),
                       ("listwise k=4, max_prompt_tokens=4000",
                        ListwiseOptions(group_size=4, max_prompt_tokens=4000))]:
        got = asyncio.run(listwise(rec, opts))
        print(f"{name:<44}{got['judge_calls']:>12,}{got['prompt_chars']:>14,}"
              f"   rounds {got['rounds']}, views {', '.join(got['views'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
