"""End-to-end benchmark of ``longreward run`` (sample → score → pairs) with the dry-run policy
and dry-run judge: wall time per stage and per pair, model calls per pair, then the same for a
rerun (which must make no call).

    python benchmarks/pipeline_e2e.py [--data /work/shared/data/longreward_example] [--copies 4]

The dry-run providers answer instantly, so this measures longreward's own overhead
(rendering, chunking, retrieval, the store, output writing) and counts the calls a real judge
would receive. ``--copies K`` repeats each prompt K times with a marked question, so the copies
are distinct prompts (not cache hits) and per-pair figures average over K pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from longreward.stages.run import RunConfig, run_pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/longreward_example",
                    help="directory with sft.jsonl (fields idx, query, context)")
    ap.add_argument("--copies", type=int, default=1, help="distinct copies of each prompt")
    ap.add_argument("--n", type=int, default=10, help="answers per prompt (paper: 10)")
    ap.add_argument("--workdir", default=None, help="where to write (default: a temp dir)")
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="longreward-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    prompts = work / "prompts.jsonl"
    n_prompts = 0
    with open(Path(args.data) / "sft.jsonl", encoding="utf-8") as src, open(prompts, "w", encoding="utf-8") as dst:
        for line in src:
            row = json.loads(line)
            for k in range(args.copies):
                query = row["query"] if args.copies == 1 else f"{row['query']} (copy {k})"
                dst.write(json.dumps({"id": f"{row['idx']}-c{k}", "context": row["context"],
                                      "query": query}, ensure_ascii=False) + "\n")
                n_prompts += 1

    config = RunConfig.model_validate({
        "prompts": str(prompts),
        "run_dir": str(work / "run"),
        "sample": {"policy": {"provider": "dry_run", "model": "dry-policy"}, "n": args.n},
        "score": {"judge": {"provider": "dry_run", "model": "dry-judge"}},
        "pairs": {"format": "trl"},
    }).resolve(work)

    for label in ("first run", "rerun (resume, nothing to do)"):
        t0 = time.perf_counter()
        s = asyncio.run(run_pipeline(config))
        total = time.perf_counter() - t0
        pairs = s.pairs.pairs if s.pairs else 0
        calls = sum(s.model_calls.values())
        print(f"\n== {label}: {n_prompts} prompt(s) × {args.n} answers → {pairs} pair(s) "
              f"[skipped: {dict(s.pairs.skipped) if s.pairs else {}}]")
        print(f"{'stage':<8}{'wall s':>10}{'s/pair':>10}{'model calls':>13}{'calls/pair':>12}")
        for stage in ("sample", "score", "pairs"):
            sec, n = s.seconds.get(stage, 0.0), s.model_calls.get(stage, 0)
            sec_pp = f"{sec / pairs:.3f}" if pairs else "–"
            n_pp = f"{n / pairs:.1f}" if pairs else "–"
            print(f"{stage:<8}{sec:>10.3f}{sec_pp:>10}{n:>13}{n_pp:>12}")
        print(f"{'total':<8}{total:>10.3f}{(f'{total / pairs:.3f}' if pairs else '–'):>10}"
              f"{calls:>13}{(f'{calls / pairs:.1f}' if pairs else '–'):>12}")
    print(f"\noutputs in {work / 'run'}")


if __name__ == "__main__":
    main()
