"""Judge-client throughput: ``ModelClient.ask`` against a plain async HTTP client (httpx).

Both run in this process, one after the other, against the same loopback server (a separate
process that holds each request ``--latency`` seconds and answers a fixed chat completion), with
the same concurrency and the same request bodies (a JSON-schema ``response_format`` included).
The plain client only posts the body and reads the reply's text; ours goes through the whole
judge path: cache key, single-flight, limiters, retries, the provider, the JSON reply parser and
the accounting. Scoring a million answers must be bounded by the judge, not by our own CPU.

    python benchmarks/client_throughput.py                       # 6100 calls, concurrency 64
    python benchmarks/client_throughput.py --store               # with the SQLite call cache
    python benchmarks/client_throughput.py --profile 25          # cProfile of our client
    python benchmarks/client_throughput.py --micro               # + tenacity/aiolimiter cost

Two plain baselines: httpx with one pool of ``concurrency`` connections (what a plain client
does by default; httpx's pool scans grow with the square of the pool), and httpx with the
connections split over pools of 8 (the same trick our provider uses: the tightest baseline).
Prints requests/s of each, the ratios (target: ours ≥ 0.6× the plain client), client CPU per
call (this process only; the server is another process) and the peak Python memory of each
side (tracemalloc, in a separate smaller pass so it does not slow the timed pass).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import multiprocessing as mp
import os
import pstats
import resource
import socket
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import BaseModel, Field

MODEL = "bench-judge"


class Verdict(BaseModel):
    """A reply model shaped like a dimension's (analysis first, then a bounded score)."""

    analysis: str = Field(description="reasoning before the score")
    score: float = Field(ge=0, le=10)


# ---------------------------------------------------------------------------------- server

_REPLY = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": MODEL,
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant",
                             "content": json.dumps({"analysis": "Adequate.", "score": 7})}}],
    "usage": {"prompt_tokens": 600, "completion_tokens": 12, "total_tokens": 612,
              "prompt_tokens_details": {"cached_tokens": 512}},
}).encode()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  latency: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            await asyncio.sleep(latency)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(_REPLY), _REPLY))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _serve(sock: socket.socket, latency: float) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _handle(r, w, latency), sock=sock,
                                            backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def start_server(latency: float) -> tuple[mp.Process, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    proc = mp.get_context("fork").Process(target=_serve, args=(sock, latency), daemon=True)
    proc.start()
    sock.close()
    return proc, f"http://127.0.0.1:{port}/v1"


# ---------------------------------------------------------------------------------- clients

def messages_for(i: int, prompt_chars: int) -> list[dict[str, str]]:
    # Distinct prompts: no cache hit and no single-flight sharing on our side.
    filler = ("The harbour report lists cargo, tides and crew changes. " * 200)[:prompt_chars]
    return [{"role": "system", "content": "You grade answers. Reply with JSON."},
            {"role": "user", "content": f"Answer #{i}:\n{filler}"}]


async def _drive(n: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> None:
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run_plain(base_url: str, n: int, concurrency: int, prompt_chars: int,
                    pools: int = 1) -> None:
    """Post the body, read the text. ``pools`` > 1 splits the connections over that many
    httpx clients (the least busy takes the next request), as our provider does."""
    schema = Verdict.model_json_schema()
    per_pool = -(-concurrency // pools)
    limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
    https = [httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60)
             for _ in range(pools)]
    load = [0] * pools

    async def one(i: int) -> None:
        body = {"model": MODEL, "messages": messages_for(i, prompt_chars), "temperature": 0.0,
                "response_format": {"type": "json_schema", "json_schema": {
                    "name": "Verdict", "schema": schema, "strict": False}}}
        k = min(range(pools), key=load.__getitem__)
        load[k] += 1
        try:
            response = await https[k].post("/chat/completions", json=body)
        finally:
            load[k] -= 1
        response.raise_for_status()
        text = response.json()["choices"][0]["message"]["content"]
        assert json.loads(text)["score"] == 7

    try:
        await _drive(n, concurrency, one)
    finally:
        for http in https:
            await http.aclose()


async def run_ours(base_url: str, n: int, concurrency: int, prompt_chars: int,
                   store_dir: str | None) -> None:
    from longreward.judge import GenerateConfig, Message, ModelClient, OpenAICompatibleAPI
    from longreward.store import RunStore

    store = RunStore(store_dir) if store_dir else None
    api = OpenAICompatibleAPI(MODEL, base_url=base_url, max_connections=concurrency)
    client = ModelClient(api, cache=store, max_concurrency=concurrency,
                         structured_output="auto")
    config = GenerateConfig(temperature=0.0)

    def parse_text(text: str) -> Verdict:
        raise AssertionError("the benchmark server takes JSON schemas; no text mode expected")

    async with client:
        async def one(i: int) -> None:
            msgs = [Message(**m) for m in messages_for(i, prompt_chars)]
            asked = await client.ask(lambda mode: msgs, Verdict, parse_text, tag="bench",
                                     config=config)
            assert asked.value is not None and asked.value.score == 7, asked.error

        await _drive(n, concurrency, one)
    if store is not None:
        store.close()


# ---------------------------------------------------------------------------------- measuring

def measure(name: str, make: Callable[[], Awaitable[None]], n: int,
            profile: int | None = None) -> dict[str, float]:
    profiler = cProfile.Profile() if profile else None
    cpu0, t0 = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    asyncio.run(make())
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if profiler:
        print(f"--- profile of {name} (top {profile} by own time) ---")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)
    return {"wall_s": wall, "rps": n / wall, "cpu_ms_per_call": 1000 * cpu / n}


def peak_memory(make: Callable[[], Awaitable[None]]) -> float:
    tracemalloc.start()
    asyncio.run(make())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=6100)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--latency", type=float, default=0.020, help="server hold per request, s")
    p.add_argument("--prompt-chars", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=2, help="timed passes per client (best kept)")
    p.add_argument("--memory-calls", type=int, default=1000,
                   help="calls in the tracemalloc pass (0: skip)")
    p.add_argument("--store", action="store_true", help="our client with a SQLite RunStore cache")
    p.add_argument("--micro", action="store_true",
                   help="also time the retry loop and a limiter acquire alone")
    p.add_argument("--profile", type=int, default=None, metavar="N",
                   help="profile our client and print the top N functions")
    args = p.parse_args(argv)

    proc, base_url = start_server(args.latency)
    try:
        time.sleep(0.3)
        tmp = tempfile.mkdtemp(prefix="lr-bench-")
        runs = 0

        def ours(n: int) -> Callable[[], Awaitable[None]]:
            def make() -> Awaitable[None]:
                nonlocal runs
                runs += 1  # a fresh store each pass: a cache hit is not a request
                store = os.path.join(tmp, f"run{runs}") if args.store else None
                return run_ours(base_url, n, args.concurrency, args.prompt_chars, store)
            return make

        def plain(n: int, pools: int = 1) -> Callable[[], Awaitable[None]]:
            return lambda: run_plain(base_url, n, args.concurrency, args.prompt_chars, pools)

        sharded = f"httpx {-(-args.concurrency // 8)} pools"

        # warm-up: imports, first connections
        measure("warm-up plain", plain(200), 200)
        measure("warm-up ours", ours(200), 200)
        results: dict[str, dict[str, float]] = {}
        sides = [("plain httpx", plain(args.calls)),
                 (sharded, plain(args.calls, -(-args.concurrency // 8))),
                 ("longreward", ours(args.calls))]
        for _ in range(args.repeats):  # interleaved: every side sees the same machine load
            for name, make in sides:
                r = measure(name, make, args.calls)
                if name not in results or r["rps"] > results[name]["rps"]:
                    results[name] = r
        if args.profile:
            measure("longreward", ours(args.calls), args.calls, profile=args.profile)
        if args.memory_calls:
            results["plain httpx"]["peak_mib"] = peak_memory(plain(args.memory_calls))
            results[sharded]["peak_mib"] = peak_memory(
                plain(args.memory_calls, -(-args.concurrency // 8)))
            results["longreward"]["peak_mib"] = peak_memory(ours(args.memory_calls))
    finally:
        proc.terminate()
        proc.join(5)

    print(f"calls={args.calls} concurrency={args.concurrency} latency={args.latency * 1000:g}ms "
          f"prompt_chars={args.prompt_chars} store={args.store} python={sys.version.split()[0]} "
          f"cpus={os.cpu_count()}")
    print(f"{'client':<16} {'wall s':>8} {'req/s':>9} {'CPU ms/call':>12} {'peak MiB':>9}")
    for name, r in results.items():
        peak = f"{r['peak_mib']:9.1f}" if "peak_mib" in r else f"{'-':>9}"
        print(f"{name:<16} {r['wall_s']:8.2f} {r['rps']:9.0f} {r['cpu_ms_per_call']:12.3f} {peak}")
    ours_rps = results["longreward"]["rps"]
    for name in ("plain httpx", sharded):
        print(f"ratio longreward / {name} = {ours_rps / results[name]['rps']:.2f}x "
              "(target >= 0.60x)")
    print(f"max RSS of the process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          " MiB" + (f"; memory pass: {args.memory_calls} calls each" if args.memory_calls else ""))
    if args.micro:
        micro()
    return 0


def micro(n: int = 20000) -> None:
    """Per-call cost of the retry loop (tenacity) and of a rate-limit acquire (aiolimiter),
    on a call that succeeds at once: what choosing these libraries costs us."""
    from aiolimiter import AsyncLimiter

    from longreward.judge._accounting import ClientStats
    from longreward.judge._retries import RetryPolicy

    async def ok() -> int:
        return 1

    async def bare() -> None:
        for _ in range(n):
            await ok()

    async def retried() -> None:
        policy = RetryPolicy(ClientStats())
        for _ in range(n):
            await policy.run(ok, "micro")

    async def limited() -> None:
        limiter = AsyncLimiter(1e12, 1.0)
        for _ in range(n):
            await limiter.acquire(1)

    times = {}
    for name, fn in (("bare call", bare), ("tenacity retry loop", retried),
                     ("aiolimiter acquire", limited)):
        t0 = time.perf_counter()
        asyncio.run(fn())
        times[name] = (time.perf_counter() - t0) / n * 1e6
    print("micro: " + ", ".join(f"{k} {v:.1f} us" for k, v in times.items()))


if __name__ == "__main__":
    raise SystemExit(main())
