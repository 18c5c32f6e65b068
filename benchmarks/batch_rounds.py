"""Batch mode on the LongEval example: judge calls, prompt tokens and estimated cost per
preference pair online against batch, the number of rounds, and the wall-clock overhead of
the rounds (the local work between them).

The LongEval PubMed example (20 articles, two summaries each: 20 pairs) is scored three ways
against the judge double (tests/judge_double.py, deterministic, answering at once): online,
through the double's Batch API (``--batch openai``), and in file mode (``--batch files``: a
pass per round, shards executed by POSTing each line to the double, results ingested). The
rows of the three runs are compared (scores, reasons, details; ``cached_tokens`` aside, see
tests/batch_executor.py).

The double is no LLM: its replies are schema-valid placeholders, so the number of statements
per answer (and so of grading calls) is the double's, not a real judge's. The counts compare
the modes with each other, which make the same requests by construction. Cost uses the prices
given (default: $2.50 / $10.00 per million input / output tokens, a GPT-4o-class list price)
and the published Batch API discount of 50 %.

    python benchmarks/batch_rounds.py [--data FILE] [--price-in 2.5 --price-out 10]
                                      [--discount 0.5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from batch_executor import comparable, execute_shard, rows  # noqa: E402
from longreward.config import ScoreOptions  # noqa: E402
from longreward.judge.batch import (  # noqa: E402
    BatchOptions,
    BatchPending,
    BatchRun,
    ingest_results,
)
from longreward.stages.score import score_file  # noqa: E402

from judge_double import JudgeDouble  # noqa: E402

DEFAULT_DATA = ROOT.parent.parent / "shared" / "data" / "longeval_pubmed" / \
    "faithfulness_human.jsonl"


def _judged(stats: dict[str, Any]) -> dict[str, float]:
    """Requests and tokens of the judge's own calls (the online format probe left out)."""
    tags = {t: s for t, s in stats["by_tag"].items() if t != "probe"}
    return {k: sum(s[k] for s in tags.values())
            for k in ("requests", "prompt_tokens", "completion_tokens")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--price-in", type=float, default=2.5, help="USD per million input tokens")
    ap.add_argument("--price-out", type=float, default=10.0,
                    help="USD per million output tokens")
    ap.add_argument("--discount", type=float, default=0.5, help="batch discount (OpenAI: 0.5)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not args.data.exists():
        print(f"LongEval data not found at {args.data}", file=sys.stderr)
        return 2
    records = [json.loads(x) for x in args.data.read_text().splitlines()]
    n_pairs = len({r["prompt_id"] for r in records})
    price = {"input_per_mtok": args.price_in, "output_per_mtok": args.price_out,
             "batch_discount": args.discount}
    out: dict[str, Any] = {"answers": len(records), "pairs": n_pairs, "prices": price}

    with JudgeDouble() as double, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        opts = ScoreOptions.model_validate({"judge": {
            "model": "judge-double", "base_urls": [double.base_url], "timeout": 60,
            "prices": price}})

        def run(name: str, batch: BatchRun | None = None) -> tuple[Any, float]:
            t0 = time.perf_counter()
            summary = asyncio.run(score_file(args.data, tmp / f"{name}.jsonl", opts,
                                             run_dir=tmp / f"{name}.run", batch=batch))
            return summary, time.perf_counter() - t0

        # warm-up (imports, the tokenizer, the first BM25 index) so that no mode pays it
        warm = tmp / "warm.jsonl"
        warm.write_text(json.dumps(records[0]) + "\n")
        asyncio.run(score_file(warm, tmp / "warm.out.jsonl", opts, run_dir=tmp / "warm.run",
                               batch=BatchRun(BatchOptions(mode="openai", poll_interval=0.01),
                                              "score")))
        double.reset()
        online, wall_online = run("online")
        double.reset()
        api = BatchRun(BatchOptions(mode="openai", poll_interval=0.01), "score")
        batch, wall_batch = run("batch", api)
        double.reset()

        passes: list[float] = []
        executing = ingesting = 0.0
        while True:
            files = BatchRun(BatchOptions(mode="files"), "score")
            t0 = time.perf_counter()
            try:
                done, _ = run("files", files)
                passes.append(time.perf_counter() - t0)
                break
            except BatchPending as exc:
                passes.append(time.perf_counter() - t0)
                t1 = time.perf_counter()
                res = tmp / "results" / str(exc.round_no)
                res.mkdir(parents=True)
                for shard in map(Path, exc.shards):
                    execute_shard(shard, double.base_url, res / shard.name)
                t2 = time.perf_counter()
                ingest_results(tmp / "files.run", [res])
                executing += t2 - t1
                ingesting += time.perf_counter() - t2
            if len(passes) > 10:
                raise RuntimeError("file mode did not finish in 10 rounds")

        ref = rows(tmp / "online.jsonl")
        same = {mode: all(comparable(ref[k]) == comparable(r.get(k, {})) for k in ref)
                and len(r) == len(ref)
                for mode, r in (("batch", rows(tmp / "batch.jsonl")),
                                ("files", rows(tmp / "files.jsonl")))}

    on, ba = _judged(online.stats), _judged(batch.stats)
    service = sum(r["seconds"] for r in api.rounds)
    out.update({
        "online": {**on, "cost_usd": online.stats["cost_usd"], "wall_s": round(wall_online, 2)},
        "batch": {**ba, "cost_usd": batch.stats["cost_usd"], "wall_s": round(wall_batch, 2),
                  "rounds": len(api.rounds), "requests_per_round":
                      [r["requests"] for r in api.rounds],
                  "request_bytes_per_round": [r["bytes"] for r in api.rounds],
                  "local_s": api.local_seconds, "quiescence_s": api.idle_seconds,
                  "service_s": round(service, 2)},
        "files": {"passes_s": [round(p, 2) for p in passes], "executor_s": round(executing, 2),
                  "ingest_s": round(ingesting, 2), "wall_s": round(sum(passes), 2)},
        "rows_identical": same,
    })
    # the online cost includes the one format probe; compare the judge's calls only
    on_cost = (on["prompt_tokens"] * args.price_in + on["completion_tokens"] * args.price_out) / 1e6
    print(f"LongEval PubMed: {len(records)} answers, {n_pairs} pairs; judge double; "
          f"prices ${args.price_in}/{args.price_out} per Mtok, batch discount {args.discount:.0%}")
    print(f"\n{'per pair':<24}{'online':>12}{'batch':>12}{'ratio':>8}")
    for key, a, b in (("judge calls", on["requests"], ba["requests"]),
                      ("prompt tokens", on["prompt_tokens"], ba["prompt_tokens"]),
                      ("completion tokens", on["completion_tokens"], ba["completion_tokens"]),
                      ("est. cost (USD)", on_cost, batch.stats["cost_usd"])):
        fmt = "{:>12.5f}" if "cost" in key else "{:>12,.1f}"
        print(f"{key:<24}" + fmt.format(a / n_pairs) + fmt.format(b / n_pairs)
              + f"{b / a if a else float('nan'):>8.2f}")
    local = api.local_seconds
    print(f"\nrounds: {len(api.rounds)} (requests per round "
          f"{out['batch']['requests_per_round']}, request bytes per round "
          f"{out['batch']['request_bytes_per_round']})")
    print(f"wall time: online {wall_online:.2f}s; Batch API mode {wall_batch:.2f}s = local work "
          f"{sum(local):.2f}s {local} (of which waiting to be sure of quiescence "
          f"{api.idle_seconds}) + batch service {service:.2f}s (the double: upload, poll, "
          "download; the SDK's import in round 1)")
    print(f"file mode: {len(passes)} passes {out['files']['passes_s']} = {sum(passes):.2f}s of "
          f"local work (each pass replays the earlier rounds from the store), executor "
          f"{executing:.2f}s, ingest {ingesting:.2f}s")
    print(f"rows identical to online: Batch API {same['batch']}, file mode {same['files']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
