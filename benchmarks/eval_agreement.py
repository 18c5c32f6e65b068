"""What ``eval agreement`` costs on the shipped LongEval PubMed example (40 summaries of 20
articles, 19 human preference pairs): judge calls and prompt characters per pair for the
reward (and each of its dimensions) and for each baseline, the time the leave-one-dimension-out
ablation takes (it must make no call), and what a rerun costs (it must make none).

By default the judge is longreward's offline dry-run provider, so the scores mean nothing; the
call pattern is the real one, except that the number of faithfulness statements per answer is
the dry-run's (2–4 sentences drawn from the answer), where a real judge would find more. Every
call that reaches the provider is counted by its step tag, with the characters of its messages.

With ``--base-url/--model`` it runs against a real judge (e.g. the one of
``benchmarks/real_judge.py``) and prints the accuracies with their intervals as well; give
``--work-dir`` to keep its run directory, and ``--limit``/``--prompts`` to run part of the data
(a later run with more prompts reuses every answer and call already made). The rerun check is
made with the dry-run judge only (a second pass over a real judge's run would only re-read it).

    python benchmarks/eval_agreement.py [--data FILE] [--dimensions faithfulness]
    python benchmarks/eval_agreement.py --base-url http://127.0.0.1:8011/v1 \
        --model qwen2.5-coder-1.5b-instruct --work-dir out/qwen15b --limit 1
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
from longreward.eval import AgreementOptions, AgreementResult, evaluate_agreement
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


async def run(data: Path, work: Path, options: ScoreOptions, agreement: AgreementOptions,
              ) -> tuple[AgreementResult, CallCounter, float]:
    scorer = LongReward(build_client(options), options=options)
    counter = CallCounter()
    counter.attach(scorer.client)
    t0 = time.perf_counter()
    try:
        result = await evaluate_agreement(data, work / "agreement.json", options, agreement,
                                          scorer=scorer)
    finally:
        await scorer.aclose()
    return result, counter, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--dimensions", default=None,
                        help="comma-separated subset (default: all four)")
    parser.add_argument("--base-url", default=None, help="a real judge (default: dry-run)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="per call, for a real judge on a CPU")
    parser.add_argument("--baselines", default="all")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--prompts", default=None, help="comma-separated prompt ids")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the result and run directory here (default: a temp dir)")
    args = parser.parse_args()
    real = args.base_url is not None
    opts: dict[str, Any] = {"judge": (
        {"base_urls": [args.base_url], "model": args.model, "timeout": args.timeout,
         "max_concurrency": 1} if real else {"provider": "dry_run"})}
    if args.dimensions:
        opts["dimensions"] = args.dimensions.split(",")
    options = ScoreOptions(**opts)
    agreement = AgreementOptions(
        label_field="human_faithfulness",
        baselines=[] if args.baselines == "none" else args.baselines.split(","),
        limit=args.limit, prompts=args.prompts.split(",") if args.prompts else None)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result, counter, seconds = asyncio.run(run(args.data, work, options, agreement))
        again = None
        if not real:
            again, counter2, seconds2 = asyncio.run(run(args.data, work, options, agreement))
    pairs = max(result.pairs, 1)
    per_method: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for tag, n in counter.calls.items():
        per_method[counter.method(tag)][0] += n
        per_method[counter.method(tag)][1] += counter.chars[tag]
    dims = result.dimensions
    reward = [sum(per_method[d][0] for d in dims), sum(per_method[d][1] for d in dims)]
    judge = f"{args.model} at {args.base_url}" if real else "dry-run (offline)"
    print(f"data: {args.data.name}: {result.answers} answers, {result.prompts} prompts, "
          f"{result.pairs} pairs; judge: {judge}")
    print(f"{'method':<22}{'calls/pair':>12}{'prompt chars/pair':>20}{'accuracy':>10}"
          f"{'95% CI':>14}{'prompt tok':>12}{'compl. tok':>12}")
    rows = [("reward", reward), *((f"  {d}", per_method[d]) for d in dims),
            *((b, per_method[b]) for b in ("pairwise", "holistic", "length", "consensus"))]
    for name, (calls, chars) in rows:
        m = result.method(name.strip())
        shown = ("left out" if m is None else "–" if m.accuracy is None
                 else f"{100 * m.accuracy:.1f}%")
        ci = ("" if m is None or m.ci[0] is None or m.ci[1] is None
              else f"{100 * m.ci[0]:.0f}–{100 * m.ci[1]:.0f}")
        cost = (m.cost if m is not None else None)
        print(f"{name:<22}{calls / pairs:>12.2f}{chars / pairs:>20,.0f}{shown:>10}{ci:>14}"
              f"{cost.prompt_tokens if cost else '':>12}"
              f"{cost.completion_tokens if cost else '':>12}")
    for note in result.notes:
        print(f"note: {note}")
    for d in result.diagnostics:
        print(f"diagnostic {d.name}: {d.reading}")
    ablation = result.ablation_seconds
    print(f"leave-one-out ablation ({len(result.ablation)} rewards recombined): "
          f"{1000 * ablation:.2f} ms, {result.ablation_requests} judge calls; "
          f"{ablation / seconds:.2e} of the first run's wall time ({seconds:.2f} s)")
    stats = result.stats
    print(f"judge calls sent {stats.get('requests')}, from the cache {stats.get('cache_hits')}; "
          f"tokens {stats.get('prompt_tokens')} prompt + {stats.get('completion_tokens')} "
          f"completion; wall time {seconds:.1f} s")
    assert result.ablation_requests == 0, "the ablation must make no judge call"
    if again is not None:
        print(f"rerun: {sum(counter2.calls.values())} calls reached the judge, "
              f"{again.stats['cache_hits']} came from the run store; {seconds2:.2f} s")
        assert sum(counter2.calls.values()) == 0, "a rerun must make no judge call"


if __name__ == "__main__":
    main()
