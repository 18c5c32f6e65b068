"""Run a longreward batch round through OpenAI-compatible servers with Ray Data.

``longreward score --batch files`` (or ``sample --batch files``) writes each round as shards
``RUN/rounds/N/part-XXXX.jsonl`` of OpenAI batch-format requests. This script reads a round's
shards as a Ray dataset, sends every request to one of the given servers (vLLM or SGLang
servers on your GPU nodes, or any OpenAI-compatible endpoint) from Ray actors spread over the
cluster, and writes the result lines; ``longreward batch ingest RUN RESULTS`` reads them back.

    pip install "ray[data]" httpx
    python examples/batch/ray_executor.py RUN/rounds/1 results/1 \\
        --base-url http://gpu-node-1:8000/v1 --base-url http://gpu-node-2:8000/v1 \\
        --actors 4 --requests-per-actor 32
    longreward batch ingest RUN results/1

Each request line is kept as text end to end (a judge request's body holds a JSON schema
whose shape differs from one dimension to the next, which a columnar schema would not hold),
and each result is written in the batch output format (``custom_id``, ``response``:
``{status_code, body}``, ``error``). A request that fails at the HTTP level comes back as an
error line, which longreward reports and sends again in its next round.
"""

from __future__ import annotations

import argparse
import json
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


class HTTPExecutor:
    """A Ray Data actor: sends a batch of request lines, ``threads`` at a time."""

    def __init__(self, base_urls: list[str], api_key: str, timeout: float, threads: int) -> None:
        import httpx

        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.http = httpx.Client(timeout=timeout,
                                 headers={"Authorization": f"Bearer {api_key}"},
                                 limits=httpx.Limits(max_connections=threads))
        self.pool = ThreadPoolExecutor(threads)

    def send(self, text: str) -> str:
        import httpx

        request = json.loads(text)
        cid = request["custom_id"]
        # the same request always goes to the same server (its prefix cache helps)
        base = self.base_urls[zlib.crc32(cid.encode()) % len(self.base_urls)]
        path = request["url"].removeprefix("/v1")
        try:
            r = self.http.post(base + path, json=request["body"])
            try:
                body: Any = r.json()
            except ValueError:
                body = {"error": {"message": r.text[:2000]}}
            result = {"custom_id": cid, "response": {"status_code": r.status_code, "body": body},
                      "error": None}
        except httpx.HTTPError as exc:
            result = {"custom_id": cid, "response": None,
                      "error": {"code": "server_error", "message": f"{type(exc).__name__}: {exc}"}}
        return json.dumps(result, ensure_ascii=False)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        return {"result": list(self.pool.map(self.send, list(batch["text"])))}


def run(shards: list[str], out: Path, base_urls: list[str], *, actors: int = 2,
        requests_per_actor: int = 16, timeout: float = 600.0, api_key: str = "EMPTY",
        cpus_per_actor: float = 0.25) -> int:
    """Execute ``shards``; write their results to ``out`` (a JSONL file); return the count."""
    import ray

    ds = ray.data.read_text(shards)
    ds = ds.map_batches(HTTPExecutor, batch_size=requests_per_actor,
                        compute=ray.data.ActorPoolStrategy(min_size=actors, max_size=actors),
                        # an actor mostly waits on HTTP: a full CPU each would starve the read
                        num_cpus=cpus_per_actor,
                        fn_constructor_kwargs={"base_urls": base_urls, "api_key": api_key,
                                               "timeout": timeout,
                                               "threads": requests_per_actor})
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for batch in ds.iter_batches(batch_format="numpy"):
            for line in batch["result"]:
                fh.write(str(line) + "\n")
                n += 1
    tmp.replace(out)  # a half-written file is never read by ingest
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("round", help="a round's directory (RUN/rounds/N) or one shard file")
    parser.add_argument("results", help="directory for the result file")
    parser.add_argument("--base-url", action="append", required=True,
                        help="OpenAI-compatible base URL ending in /v1 (repeatable)")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--requests-per-actor", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--cpus-per-actor", type=float, default=0.25,
                        help="CPUs Ray reserves per actor (they mostly wait on HTTP)")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    args = parser.parse_args()
    import ray

    ray.init(address=args.address, ignore_reinit_error=True, log_to_driver=False)
    src = Path(args.round)
    shards = sorted(str(p) for p in src.glob("part-*.jsonl")) if src.is_dir() else [str(src)]
    name = f"ray-{src.name if src.is_dir() else src.stem}.jsonl"
    n = run(shards, Path(args.results) / name, args.base_url, actors=args.actors,
            requests_per_actor=args.requests_per_actor, timeout=args.timeout,
            api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"),
            cpus_per_actor=args.cpus_per_actor)
    print(f"{n} results from {len(shards)} shard(s) in {Path(args.results) / name}")


if __name__ == "__main__":
    main()
