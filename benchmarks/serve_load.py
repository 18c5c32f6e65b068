"""Load benchmark of ``longreward serve`` as an OpenRLHF remote reward: N concurrent
``/get_reward`` requests (one sample each, as OpenRLHF sends them) for S samples × P prompts
over D registered documents, on 127.0.0.1, with the judge double as the judge.

    python benchmarks/serve_load.py                      # 1,000 requests: 8 × 125 over 25
    python benchmarks/serve_load.py --docs 5 --prompts-per-doc 2 --samples 4   # quick

The server is the real command (``longreward serve``) in its own process, the judge double
another; this process is the trainer. The double answers at once, so the figures are
longreward's own cost, not a judge's. Reported:
- errors (non-200, unscored or masked items) — must be 0;
- client-side latency p50/p99 of the N requests, all sent at once;
- server overhead per request: the time a request spent in the service outside the scorer
  (parsing, grouping, replying), from the server's Prometheus histogram;
- the same N answers scored in this process with the scorer alone (no HTTP) as the baseline:
  wall-time ratio HTTP / direct;
- judge calls per prompt by step, against a measured no-sharing baseline (each sample
  scored by a fresh scorer, as a reward server without shared per-document work would):
  the completeness extraction runs once per prompt, not once per sample;
- a restart on the same run directory: the N requests again, and the judge calls they cost
  (0: every call is in the run store).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from longreward import LongReward, ScoreOptions

REPO = Path(__file__).resolve().parents[1]
WORDS = ["harbour", "dredging", "tonnage", "ferry", "cranes", "budget", "surplus", "berth",
         "pilots", "storm", "tariff", "warehouse", "customs", "container", "fishing",
         "lighthouse", "channel", "quay", "tug", "cargo", "levy", "ledger", "council", "mill"]
CHAT = "<|im_start|>user\n{doc_ref}\n\n{query}<|im_end|>\n<|im_start|>assistant\n"


def make_document(d: int, paragraphs: int) -> str:
    out = []
    for i in range(paragraphs):
        w = [WORDS[(d * 5 + i * 7 + j * 3) % len(WORDS)] for j in range(6)]
        out.append(f"Section {i} of report {d}. In year {1900 + i} the {w[0]} of district {i} "
                   f"handled {i * 37 + d} units of {w[1]} while the {w[2]} and {w[3]} reported "
                   f"{w[4]} figures near {i * 13 + d} for the {w[5]} office.")
    return "\n\n".join(out)


def make_prompts(n_docs: int, per_doc: int, paragraphs: int) -> list[dict[str, str]]:
    return [{"id": f"d{d}-q{q}", "context": make_document(d, paragraphs),
             "query": f"What did report {d} say about the {WORDS[(d + q) % len(WORDS)]} "
                      f"in district {q}?"}
            for d in range(n_docs) for q in range(per_doc)]


def answer(pid: str, k: int) -> str:
    return (f"For {pid}, the report says district {k} handled {k * 37 + 3} units. "
            f"The office noted figures near {k * 13 + 5}. Sample {k}.")


def _start(cmd: list[str], log: Path, ready: str, env: dict[str, str] | None = None,
           timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Start ``cmd`` with its output in ``log`` (never a pipe that could fill up) and wait
    for the line announcing its URL."""
    fh = open(log, "w")  # noqa: SIM115 - closed by the OS when the child exits
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "250", **(env or {})})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(ready, log.read_text())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{cmd[:4]} did not start:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _scrape(url: str) -> dict[str, float]:
    return _metrics(httpx.get(f"{url}/metrics", timeout=60).text)


def _overhead_ms(m: dict[str, float], before: dict[str, float] | None = None) -> float | None:
    """Mean server overhead per /get_reward request (since ``before``), from the histogram."""
    key = 'longreward_request_overhead_seconds_{}{{endpoint="/get_reward"}}'
    n = m.get(key.format("count"), 0) - (before or {}).get(key.format("count"), 0)
    total = m.get(key.format("sum"), 0) - (before or {}).get(key.format("sum"), 0)
    return 1000 * total / n if n else None


def _judge_calls(m: dict[str, float]) -> dict[str, float]:
    calls: dict[str, float] = {}
    for name, value in m.items():
        hit = re.fullmatch(r'longreward_judge_requests_total\{step="([^"]+)"\}', name)
        if hit:
            calls[hit.group(1)] = value
    return calls


def _quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _post(url: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One POST on its own connection, as OpenRLHF's client makes it (a session per
    request). A bare asyncio HTTP/1.1 client: httpx spends more CPU per request than the
    server does, and on a small machine the load generator must not be what is measured."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    data = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
                     f"\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                     + data)
        await writer.drain()
        raw = await reader.read()  # the server closes after the reply
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(payload) if payload else {}


def _request(p: dict[str, str], k: int) -> dict[str, Any]:
    chat = CHAT.format(doc_ref=f"[document {p['id']}]", query=p["query"])
    return {"query": [chat + answer(p["id"], k) + "<|im_end|>"], "prompts": [chat],
            "labels": [p["id"]]}


async def _fire(url: str, jobs: list[tuple[dict[str, str], int]], *, concurrent: bool = True
                ) -> tuple[list[float], list[str], float]:
    """Send every (prompt, sample) as its own OpenRLHF request: all at once, or one by one."""
    latencies: list[float] = []
    errors: list[str] = []

    async def one(p: dict[str, str], k: int) -> None:
        t0 = time.perf_counter()
        try:
            status, reply = await _post(url, "/get_reward", _request(p, k))
        except (OSError, ValueError) as exc:
            errors.append(f"{p['id']}/{k}: {type(exc).__name__}: {exc}")
            return
        latencies.append(time.perf_counter() - t0)
        if status != 200:
            errors.append(f"{p['id']}/{k}: HTTP {status}: {str(reply)[:200]}")
        elif reply["extra_logs"]["longreward_mask"] != [1.0]:
            errors.append(f"{p['id']}/{k}: {reply['items'][0]['reason']}")

    t0 = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(one(p, k) for p, k in jobs))
    else:
        for p, k in jobs:
            await one(p, k)
    return latencies, errors, time.perf_counter() - t0


def _options(judge_url: str) -> ScoreOptions:
    return ScoreOptions.model_validate({"judge": {"model": "judge-double",
                                                  "base_urls": [judge_url], "timeout": 60}})


async def _direct(judge_url: str, prompts: list[dict[str, str]], samples: int
                  ) -> tuple[float, float]:
    """The same answers scored in this process with one scorer (no HTTP, no store): wall
    time, and extraction calls per prompt with the scorer's shared per-document work."""
    opts = _options(judge_url)
    async with LongReward(options=opts, max_cached_documents=256) as scorer:
        t0 = time.perf_counter()
        await asyncio.gather(*(scorer.score(p["context"], p["query"], answer(p["id"], k),
                                            prompt_id=p["id"])
                               for k in range(samples) for p in prompts))
        wall = time.perf_counter() - t0
        extract = scorer.client.snapshot()["by_tag"].get("completeness.extract", {})
    return wall, extract.get("requests", 0) / len(prompts)


async def _unshared(judge_url: str, prompts: list[dict[str, str]], samples: int) -> float:
    """Extraction calls per prompt when every sample is scored alone (a fresh scorer each)."""
    total = 0
    for p in prompts:
        for k in range(samples):
            async with LongReward(options=_options(judge_url)) as scorer:
                await scorer.score(p["context"], p["query"], answer(p["id"], k))
                total += scorer.client.snapshot()["by_tag"]["completeness.extract"]["requests"]
    return total / len(prompts)


def run_load(workdir: Path, *, docs: int = 25, prompts_per_doc: int = 5, samples: int = 8,
             paragraphs: int = 400, restart: bool = True, baseline_prompts: int = 2,
             sequential: int = 100) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    prompts = make_prompts(docs, prompts_per_doc, paragraphs)
    prompts_file = workdir / "prompts.jsonl"
    prompts_file.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    judge, judge_url = _start([sys.executable, str(REPO / "tests" / "judge_double.py"),
                               "--port", "0"], workdir / "judge.log",
                              r"listening on (\S+)")
    config = workdir / "serve.yaml"
    config.write_text(f"score:\n  judge:\n    model: judge-double\n    base_urls: [{judge_url}]\n"
                      f"    timeout: 60\nrun_dir: serve.run\nport: 0\n"
                      f"max_concurrent_requests: {max(1024, docs * prompts_per_doc * samples)}\n")
    cmd = [sys.executable, "-m", "longreward", "serve", "--config", str(config),
           "--prompts", str(prompts_file), "--log-level", "warning"]
    env = {"LONGREWARD_API_KEY": "sk-bench"}
    out: dict[str, Any] = {"requests": docs * prompts_per_doc * samples, "documents": docs,
                           "prompts": len(prompts), "samples": samples}
    jobs = [(p, k) for k in range(samples) for p in prompts]
    try:
        for phase in ("first", "restart") if restart else ("first",):
            server, url = _start(cmd, workdir / f"serve-{phase}.log",
                                 r"longreward serve on (http://\S+?):? POST", env)
            try:
                lat, errors, wall = asyncio.run(_fire(url, jobs))
                m = _scrape(url)
                out[phase] = {
                    "errors": errors, "wall_s": wall,
                    "p50_s": _quantile(lat, 0.50) if lat else None,
                    "p99_s": _quantile(lat, 0.99) if lat else None,
                    "overhead_under_load_ms": _overhead_ms(m),
                    "judge_calls": _judge_calls(m),
                    "cache_hits": sum(v for k, v in m.items()
                                      if k.startswith("longreward_judge_cache_hits_total")),
                }
                if phase == "first" and sequential:
                    # One request at a time, judge calls cached: the service's own cost per
                    # request, without waiting for the event loop behind other requests.
                    lat, errors, _ = asyncio.run(_fire(url, jobs[:sequential],
                                                       concurrent=False))
                    out["sequential"] = {"requests": sequential, "errors": errors,
                                         "p50_s": _quantile(lat, 0.50),
                                         "overhead_ms": _overhead_ms(_scrape(url), m)}
            finally:
                _stop(server)
        direct_wall, direct_extract = asyncio.run(_direct(judge_url, prompts, samples))
        out["direct"] = {"wall_s": direct_wall, "extract_per_prompt": direct_extract}
        out["unshared_extract_per_prompt"] = asyncio.run(
            _unshared(judge_url, prompts[:baseline_prompts], samples))
    finally:
        _stop(judge)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=25)
    ap.add_argument("--prompts-per-doc", type=int, default=5)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--paragraphs", type=int, default=400,
                    help="paragraphs per document (400 ≈ 14k tokens, 4 extraction chunks)")
    ap.add_argument("--no-restart", action="store_true", help="skip the restart phase")
    ap.add_argument("--sequential", type=int, default=100,
                    help="requests sent one at a time after the first run (overhead)")
    ap.add_argument("--workdir", default=None, help="default: a temp dir")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="longreward-serve-load-"))
    r = run_load(work, docs=args.docs, prompts_per_doc=args.prompts_per_doc,
                 samples=args.samples, paragraphs=args.paragraphs, restart=not args.no_restart,
                 sequential=args.sequential)
    n, P = r["requests"], r["prompts"]
    print(f"longreward serve, OpenRLHF /get_reward: {n} concurrent requests = {r['samples']} "
          f"samples × {P} prompts over {r['documents']} registered documents (workdir {work})")
    for phase in ("first", "restart"):
        if phase not in r:
            continue
        f = r[phase]
        calls = f["judge_calls"]
        print(f"\n[{phase} run, {n} at once] errors: {len(f['errors'])}   wall: "
              f"{f['wall_s']:.1f}s   latency p50 {f['p50_s']:.2f}s  p99 {f['p99_s']:.2f}s   "
              f"server overhead {f['overhead_under_load_ms']:.1f} ms/request (mean, including "
              "waits for the event loop behind other requests)")
        for e in f["errors"][:5]:
            print(f"  error: {e}")
        print(f"  judge requests: {int(sum(calls.values()))} ({sum(calls.values()) / P:.1f} per "
              f"prompt), cache hits: {int(f['cache_hits'])}")
        for step, v in sorted(calls.items()):
            print(f"    {step:28s} {v / P:7.2f} per prompt  {v / n:6.2f} per sample")
        if phase == "first" and "sequential" in r:
            q = r["sequential"]
            print(f"  then {q['requests']} requests one at a time (judge calls cached): errors "
                  f"{len(q['errors'])}, latency p50 {1000 * q['p50_s']:.1f} ms, server overhead "
                  f"{q['overhead_ms']:.2f} ms/request (mean)")
    d = r["direct"]
    print(f"\n[baseline] the same {n} answers scored in-process with the scorer alone: "
          f"{d['wall_s']:.1f}s → HTTP/direct wall ratio {r['first']['wall_s'] / d['wall_s']:.2f}×")
    shared = r["first"]["judge_calls"].get("completeness.extract", 0) / P
    print(f"[sharing] completeness extraction calls per prompt: {shared:.2f} through the server "
          f"vs {r['unshared_extract_per_prompt']:.2f} when each sample is scored alone "
          f"(measured on 2 prompts) → {r['unshared_extract_per_prompt'] / max(shared, 1e-9):.1f}× "
          "fewer")


if __name__ == "__main__":
    main()
