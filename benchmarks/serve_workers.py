"""Eight verl-style reward worker processes scoring one batch at once on one serve config:
errors, judge calls made, judge calls shared.

verl 0.9's default reward path has 8 reward-loop worker processes (``reward.num_workers``).
Its agent loop sends each rollout sample, as soon as its generation ends, to a random one of
them, which awaits the custom reward function for it next to its other samples (the
``naive`` manager calls ``compute_score_async(data_source=, solution_str=, ground_truth=,
extra_info=, **reward_kwargs)``). So the samples of one prompt land in several processes at
the same moment, and each process would pay for the prompt's per-document work (the
completeness extraction: one judge call per 4k-token chunk) unless the processes share it.

This script builds a batch of P prompts × n samples, gives each sample to a random worker
(seeded), starts 8 worker processes that call ``longreward.serve.verl.compute_score_async``
exactly as the naive manager does, releases them together (a barrier), and counts what the
judge (the judge double, answering after ``--judge-delay`` s) received. Three runs:

1. shared — the 8 workers on one serve.yaml, one run directory (what verl does);
2. separate — each worker with a run directory of its own: no sharing between processes
   (within a worker the per-document work is still shared): the baseline;
3. one process — the whole batch scored by one process: the fewest calls possible.

    python benchmarks/serve_workers.py                    # 16 prompts × 8 samples, 8 workers
    python benchmarks/serve_workers.py --prompts 4 --samples 4 --workers 4   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

from serve_load import answer, make_prompts  # noqa: E402


def worker(config: str, jobs_file: str, barrier: str) -> None:
    """One reward worker process: open the backend, wait for the others, score its samples
    concurrently, print what it saw (JSON)."""
    from longreward.serve._backends import rewards_for
    from longreward.serve.verl import compute_score_async

    jobs = json.loads(Path(jobs_file).read_text())
    rewards = rewards_for(config)  # as verl's first call would: store, prompts file
    Path(barrier, f"ready-{os.getpid()}").touch()
    while not Path(barrier, "go").exists():
        time.sleep(0.005)

    async def run() -> list[Any]:
        return list(await asyncio.gather(*(
            compute_score_async(data_source="longbench", solution_str=j["answer"],
                                ground_truth=j["prompt_id"], extra_info={"index": j["index"]},
                                config=config)
            for j in jobs), return_exceptions=True))

    t0 = time.perf_counter()
    out = asyncio.run(run())
    wall = time.perf_counter() - t0
    snap = rewards.service.scorer.client.snapshot()
    errors = [f"{type(r).__name__}: {r}" for r in out if isinstance(r, BaseException)]
    errors += [f"sample {j['index']} masked" for j, r in zip(jobs, out, strict=True)
               if isinstance(r, dict) and r["longreward_mask"] != 1.0]
    print(json.dumps({"samples": len(jobs), "errors": errors, "wall_s": wall,
                      "requests": snap["requests"], "cache_hits": snap["cache_hits"],
                      "rewards": {str(j["index"]): r["score"] for j, r in zip(jobs, out,
                                                                              strict=True)
                                  if isinstance(r, dict)}}))


def _config(workdir: Path, judge_url: str, run_dir: str, prompts_file: Path) -> Path:
    path = workdir / f"serve-{run_dir}.yaml"
    path.write_text(f"score:\n  judge:\n    model: judge-double\n    base_urls: [{judge_url}]\n"
                    f"    timeout: 120\nrun_dir: {run_dir}\nprompts: {prompts_file.name}\n")
    return path


def _run(workdir: Path, name: str, configs: list[Path], assignment: list[list[dict]]
         ) -> dict[str, Any]:
    """Start one worker process per assignment, release them together, collect."""
    barrier = workdir / f"barrier-{name}"
    barrier.mkdir()
    env = {**os.environ, "LONGREWARD_API_KEY": "sk-bench",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    procs = []
    for i, (config, jobs) in enumerate(zip(configs, assignment, strict=True)):
        jobs_file = workdir / f"jobs-{name}-{i}.json"
        jobs_file.write_text(json.dumps(jobs))
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--worker", str(config), str(jobs_file), str(barrier)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 600
    while len(list(barrier.glob("ready-*"))) < len(procs):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            raise RuntimeError("a worker did not start:\n" + "\n".join(
                p.communicate()[1][-2000:] for p in procs))
        time.sleep(0.02)
    t0 = time.perf_counter()
    (barrier / "go").touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(f"a worker failed ({p.returncode}):\n{err[-3000:]}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return {"wall_s": time.perf_counter() - t0, "workers": outs,
            "errors": [e for o in outs for e in o["errors"]],
            "requests": sum(o["requests"] for o in outs),
            "cache_hits": sum(o["cache_hits"] for o in outs),
            "rewards": {k: v for o in outs for k, v in o["rewards"].items()}}


def run_workers(workdir: Path, *, prompts: int = 16, samples: int = 8, workers: int = 8,
                docs: int = 4, paragraphs: int = 400, judge_delay: float = 0.2,
                seed: int = 0) -> dict[str, Any]:
    from judge_double import JudgeDouble

    workdir.mkdir(parents=True, exist_ok=True)
    per_doc = max(1, prompts // docs)
    plist = make_prompts(docs, per_doc, paragraphs)[:prompts]
    prompts_file = workdir / "prompts.jsonl"
    prompts_file.write_text("".join(json.dumps(p) + "\n" for p in plist))
    batch = [{"index": i, "prompt_id": p["id"], "answer": answer(p["id"], k)}
             for i, (p, k) in enumerate((p, k) for p in plist for k in range(samples))]
    rng = random.Random(seed)
    assignment: list[list[dict]] = [[] for _ in range(workers)]
    for job in batch:  # verl's agent loop: random.choice(reward_loop_worker_handles)
        assignment[rng.randrange(workers)].append(job)
    out: dict[str, Any] = {"prompts": len(plist), "samples": samples, "workers": workers,
                           "batch": len(batch), "documents": docs, "judge_delay": judge_delay}
    with JudgeDouble() as double:
        double.delay = judge_delay
        runs = {
            "shared": [_config(workdir, double.base_url, "run-shared", prompts_file)] * workers,
            "separate": [_config(workdir, double.base_url, f"run-separate-{i}", prompts_file)
                         for i in range(workers)],
        }
        for name, configs in runs.items():
            before = len(double.requests)
            out[name] = _run(workdir, name, configs, assignment)
            made = double.requests[before:]
            out[name]["judge_calls"] = len(made)
            out[name]["by_step"] = dict(Counter(_step(r["body"]) for r in made))
        before = len(double.requests)
        one = _config(workdir, double.base_url, "run-one", prompts_file)
        out["one process"] = _run(workdir, "one", [one], [batch])
        out["one process"]["judge_calls"] = len(double.requests[before:])
        out["one process"]["by_step"] = dict(Counter(_step(r["body"])
                                                     for r in double.requests[before:]))
    return out


def _step(body: dict[str, Any]) -> str:
    from scripted_judge import step_of

    try:
        return step_of(body)[0]
    except AssertionError:  # not a scoring prompt
        return "other"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--docs", type=int, default=4)
    ap.add_argument("--paragraphs", type=int, default=400,
                    help="paragraphs per document (400 ≈ 14k tokens, 4 extraction chunks)")
    ap.add_argument("--judge-delay", type=float, default=0.2,
                    help="seconds the judge double takes per call")
    ap.add_argument("--workdir", default=None, help="default: a temp dir")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="longreward-serve-workers-"))
    r = run_workers(work, prompts=args.prompts, samples=args.samples, workers=args.workers,
                    docs=args.docs, paragraphs=args.paragraphs, judge_delay=args.judge_delay)
    print(f"{r['workers']} verl-style reward worker processes, one batch of {r['batch']} samples "
          f"({r['prompts']} prompts × {r['samples']}, over {r['documents']} documents), each "
          f"sample to a random worker; judge double answering after {r['judge_delay']}s "
          f"(workdir {work})\n")
    one = r["one process"]["judge_calls"]
    print(f"{'run':14s} {'errors':>6s} {'judge calls':>11s} {'vs one process':>14s} "
          f"{'cache hits':>10s} {'wall':>7s}")
    for name in ("shared", "separate", "one process"):
        x = r[name]
        print(f"{name:14s} {len(x['errors']):6d} {x['judge_calls']:11d} "
              f"{x['judge_calls'] / one:13.2f}× {x['cache_hits']:10d} {x['wall_s']:6.1f}s")
        for e in x["errors"][:3]:
            print(f"    error: {e}")
    saved = r["separate"]["judge_calls"] - r["shared"]["judge_calls"]
    print(f"\njudge calls shared between the processes: {saved} of "
          f"{r['separate']['judge_calls']} ({saved / r['separate']['judge_calls']:.0%}); "
          f"the shared run made {r['shared']['judge_calls']}, one process alone {one}")
    print("by step (shared / separate / one process):")
    steps = sorted(set(r["separate"]["by_step"]) | set(r["shared"]["by_step"]))
    for step in steps:
        print(f"  {step:28s} {r['shared']['by_step'].get(step, 0):6d} "
              f"{r['separate']['by_step'].get(step, 0):6d} "
              f"{r['one process']['by_step'].get(step, 0):6d}")
    same = all(abs(r["shared"]["rewards"][k] - v) < 1e-9
               for k, v in r["one process"]["rewards"].items())
    print(f"rewards of the shared run equal those of one process: {same}")


if __name__ == "__main__":
    main()
