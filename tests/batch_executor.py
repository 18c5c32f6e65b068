"""Helpers of the batch-mode tests: input data, an online reference run, a stand-in executor
for shard files (each line POSTed to an OpenAI-compatible server, result lines in the OpenAI
batch format, as ``vllm run-batch`` writes them), and row comparison."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from longreward.config import ScoreOptions
from longreward.io.files import default_run_dir
from longreward.judge.batch import BatchOptions, BatchPending, BatchRun, ingest_results
from longreward.stages.score import ScoreSummary, score_file

from judge_double import use_verdict_secret


def doc(tag: str, n: int = 60) -> str:
    return "\n\n".join(f"Part {i} of {tag}: the {tag} committee approved budget line {i} worth "
                       f"{i * 1000 + 7} coins on day {i % 28 + 1}." for i in range(n))


def write_input(path: Path, n_prompts: int = 2, n_cands: int = 3) -> list[str]:
    ids = []
    with open(path, "w", encoding="utf-8") as fh:
        for p in range(n_prompts):
            for k in range(n_cands):
                ids.append(f"q{p}-{k}")
                fh.write(json.dumps({
                    "id": f"q{p}-{k}", "prompt_id": f"q{p}", "context": doc(f"t{p}"),
                    "query": f"What did committee t{p} approve?",
                    "response": f"It approved line {k} worth {k * 1000 + 7} coins. Answer "
                                f"variant {k}."}) + "\n")
    return ids


def options(double: Any, **judge: Any) -> ScoreOptions:
    return ScoreOptions.model_validate(
        {"judge": {"model": "judge-double", "base_urls": [double.base_url], "timeout": 10,
                   **judge}})


def score(inp: Path, out: Path, opts: ScoreOptions, batch: BatchRun | None = None, *,
          run_dir: Path | None = None, **kw: Any) -> ScoreSummary:
    """Score ``inp``; every run directory of these tests gets the same verdict secret, so an
    online run and a batch run send byte-equal requests."""
    run_dir = run_dir or default_run_dir(out)
    use_verdict_secret(run_dir)
    return asyncio.run(score_file(inp, out, opts, run_dir=run_dir, batch=batch, **kw))


def api_run(**settings: Any) -> BatchRun:
    return BatchRun(BatchOptions(mode="openai", poll_interval=0.02, **settings), "score")


def rows(path: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    """A row without ``cached_tokens``: what a server's prefix cache held when the request
    arrived depends on the order requests reach it, not on the request (the double simulates
    a prefix cache too), so it differs between any two runs, online ones included."""
    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "cached_tokens"}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(row)


def assert_same_rows(a: Path, b: Path) -> None:
    ra, rb = rows(a), rows(b)
    assert sorted(ra) == sorted(rb)
    for key in ra:
        assert comparable(ra[key]) == comparable(rb[key]), key


def judge_bodies(double: Any) -> list[str]:
    """The judge requests the double answered (online or as batch lines), as canonical JSON."""
    return sorted(json.dumps(r["body"], sort_keys=True) for r in double.requests
                  if r["path"].endswith("/chat/completions"))


def execute_shard(shard: Path, base_url: str, out: Path, timeout: float = 30.0) -> None:
    """A stand-in executor: each line of ``shard`` POSTed to ``base_url``'s server, results
    written to ``out`` in the batch output format."""
    root = base_url.rsplit("/v1", 1)[0]
    with httpx.Client(timeout=timeout) as http, open(out, "w", encoding="utf-8") as fh:
        for line in map(json.loads, shard.read_text().splitlines()):
            r = http.post(root + line["url"], json=line["body"])
            fh.write(json.dumps({"id": f"req-{line['custom_id'][:8]}",
                                 "custom_id": line["custom_id"],
                                 "response": {"status_code": r.status_code, "request_id": "x",
                                              "body": r.json()},
                                 "error": None}) + "\n")


def score_files_mode(inp: Path, out: Path, opts: ScoreOptions, double: Any, results: Path,
                     *, max_rounds: int = 8, **settings: Any) -> tuple[ScoreSummary, int]:
    """File mode to the end: run, execute the round's shards, ingest, run again. Returns the
    final summary and the number of rounds."""
    results.mkdir(parents=True, exist_ok=True)
    for n in range(max_rounds):
        run = BatchRun(BatchOptions(mode="files", **settings), "score")
        try:
            return score(inp, out, opts, run), n
        except BatchPending as exc:
            for shard in map(Path, exc.shards):
                execute_shard(shard, double.base_url,
                              results / f"{shard.parent.name}-{shard.name}")
            ingest_results(default_run_dir(out), [results])
    raise AssertionError(f"not done after {max_rounds} rounds")
