"""What ``eval agreement`` costs on the shipped LongEval PubMed example (40 summaries of 20
articles, 19 human preference pairs): judge calls and prompt characters per pair for the
reward (and each of its dimensions) and for each baseline, the time the leave-one-dimension-out
ablation takes (it must make no call), and what a rerun costs (it must make none).

The judge is longreward's offline dry-run provider, so the scores mean nothing; the call
pattern is the real one, except that the number of faithfulness statements per answer is the
dry-run's (2–4 sentences drawn from the answer), where a real judge would find more. Every call
that reaches the provider is counted by its step tag, with the characters of its messages.

    python benchmarks/eval_agreement.py [--data FILE] [--dimensions faithfulness]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from longreward import LongReward, ScoreOptions
from longreward.eval import AgreementOptions, evaluate_agreement
from longreward.reward.scorer import build_client

DEFAULT_DATA = (Path(__file__).resolve().parents[1] / "examples" / "longeval_pubmed"
                / "faithfulness_human.jsonl")


class CallCounter:
    """Calls and prompt characters per step tag, for calls that reach the provider."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = defaultdict(int)
        self.chars: dict[str, int] = defaultdict(int)

    def attach(self, client: Any) -> None:
        inner = client.generate

        async def generate(messages: Any, *args: Any, **kwargs: Any) -> Any:
            out = await inner(messages, *args, **kwargs)
            if not out.cached:
                tag = kwargs.get("tag", "")
                self.calls[tag] += 1
                self.chars[tag] += sum(len(m.content) for m in messages)
            return out

        client.generate = generate

    def method(self, tag: str) -> str:
        return tag.split(".", 1)[1] if tag.startswith("baseline.") else tag.split(".", 1)[0]


async def run(data: Path, work: Path, options: ScoreOptions) -> tuple[dict, CallCounter, float]:
    scorer = LongReward(build_client(options), options=options)
    counter = CallCounter()
    counter.attach(scorer.client)
    t0 = time.perf_counter()
    try:
        result = await evaluate_agreement(
            data, work / "agreement.json", options,
            AgreementOptions(label_field="human_faithfulness", baselines=["all"]),
            scorer=scorer)
    finally:
        await scorer.aclose()
    return result, counter, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--dimensions", default=None,
                        help="comma-separated subset (default: all four)")
    args = parser.parse_args()
    opts: dict[str, Any] = {"judge": {"provider": "dry_run"}}
    if args.dimensions:
        opts["dimensions"] = args.dimensions.split(",")
    options = ScoreOptions(**opts)
    with tempfile.TemporaryDirectory() as tmp:
        result, counter, seconds = asyncio.run(run(args.data, Path(tmp), options))
        again, counter2, seconds2 = asyncio.run(run(args.data, Path(tmp), options))
    pairs = result["pairs"]
    per_method: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for tag, n in counter.calls.items():
        per_method[counter.method(tag)][0] += n
        per_method[counter.method(tag)][1] += counter.chars[tag]
    dims = result["dimensions"]
    reward = [sum(per_method[d][0] for d in dims), sum(per_method[d][1] for d in dims)]
    print(f"data: {args.data.name}: {result['answers']} answers, {result['prompts']} prompts, "
          f"{pairs} pairs; judge: dry-run (offline)")
    print(f"{'method':<22}{'calls/pair':>12}{'prompt chars/pair':>20}{'accuracy':>10}")
    acc = {m["name"]: m["accuracy"] for m in result["methods"]}
    rows = [("reward", reward), *((f"  {d}", per_method[d]) for d in dims),
            *((b, per_method[b]) for b in ("pairwise", "holistic", "length", "consensus"))]
    for name, (calls, chars) in rows:
        a = acc.get(name.strip())
        shown = ("left out" if name.strip() not in acc else "–" if a is None
                 else f"{100 * a:.1f}%")
        print(f"{name:<22}{calls / pairs:>12.2f}{chars / pairs:>20,.0f}{shown:>10}")
    for note in result.get("notes") or []:
        print(f"note: {note}")
    ablation = result["ablation_seconds"]
    print(f"leave-one-out ablation ({len(result['ablation'])} rewards recombined): "
          f"{1000 * ablation:.2f} ms, {result['ablation_requests']} judge calls; "
          f"{ablation / seconds:.2e} of the first run's wall time ({seconds:.2f} s)")
    print(f"rerun: {sum(counter2.calls.values())} calls reached the judge, "
          f"{again['stats']['cache_hits']} came from the run store; {seconds2:.2f} s")
    assert result["ablation_requests"] == 0, "the ablation must make no judge call"
    assert sum(counter2.calls.values()) == 0, "a rerun must make no judge call"


if __name__ == "__main__":
    main()
