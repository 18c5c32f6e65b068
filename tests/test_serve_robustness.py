"""The reward service under what a trainer and a network throw at it: bodies no JSON parser
should accept, slow clients, deadlines below the clients' timeouts, samples that fail while
their siblings are still being judged, and several reward processes on one run directory.
Real HTTP on 127.0.0.1, the judge double as the judge, SQLite stores in temp dirs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from longreward.serve._app import json_problem
from test_serve import document, metric, register, serving, steps

SRC = Path(__file__).resolve().parents[1] / "src"

# --------------------------------------------------------------------------- input


@pytest.mark.parametrize("body, problem", [
    (b'{"items": [{"prompt_id": "p1", "response": NaN}]}', "NaN is not a JSON value"),
    (b'{"query": [], "prompts": [], "labels": [Infinity]}', "Infinity is not a JSON value"),
    (b'{"prompt": -Infinity, "response": "x"}', "-Infinity is not a JSON value"),
    (b'{"deadline": 1e999, "items": []}', "1e999 is too large"),
    (b'{"documents": [{"id": "p", "context": "a \\ud800 b"}]}', "$.documents[0].context"),
    (b'{"items": [], "\\udfff": 1}', "$ key"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"response": "\xed\xa0\x80"}', "not UTF-8"),
])
def test_json_a_service_cannot_hold_is_named(body, problem):
    assert problem in (json_problem(body) or "")


def test_json_problems_are_4xx_on_every_route_never_500(judge_double, tmp_path):
    bad = {
        "/score": b'{"items": [{"prompt_id": "p1", "response": NaN}]}',
        "/get_reward": b'{"query": ["Q: a"], "prompts": ["Q: "], "labels": [NaN]}',
        "/slime": b'{"prompt": "q", "response": "\\ud800", "label": "p1"}',
        "/documents": b'{"documents": [{"id": "p2", "context": "x \\udc00", "query": "?"}]}',
    }
    with serving(judge_double, tmp_path) as (client, _):
        register(client, "p1", "harbour")
        replies = {path: client.post(path, content=body,
                                     headers={"content-type": "application/json"})
                   for path, body in bad.items()}
        fine = client.post("/slime", json={"prompt": "q", "label": "p1",
                                           "response": "Line 3 \U0001F600 was approved."})
        text = client.get("/metrics").text
    for path, r in replies.items():
        assert r.status_code == 422, (path, r.text)
        assert "invalid" in r.json()["error"], path
    assert fine.status_code == 200 and fine.json()["mask"] == 1  # an escaped pair is fine
    assert metric(text, "longreward_requests_total", endpoint="/slime", status="422") == 1


def test_slow_clients_cannot_hold_the_server(judge_double, tmp_path):
    """300 connections trickling their headers a byte at a time (slowloris) are closed by
    the server once ``read_timeout`` passes; so is a request whose body stalls; the server
    goes on answering."""
    with serving(judge_double, tmp_path, read_timeout=0.5) as (client, _):
        host, port = client.base_url.host, client.base_url.port

        async def trickle(n: int, rounds: int) -> int:
            conns = [await asyncio.open_connection(host, port) for _ in range(n)]
            for _, w in conns:
                w.write(b"POST /score HTTP/1.1\r\nHost: x\r\n")
            open_ = set(range(n))
            for _ in range(rounds):  # a header byte every 0.1 s to each connection still open
                await asyncio.sleep(0.1)
                for i in list(open_):
                    reader, writer = conns[i]
                    try:
                        if reader.at_eof() or await asyncio.wait_for(reader.read(1), 0.001):
                            open_.discard(i)
                            continue
                    except (asyncio.TimeoutError, ConnectionError):
                        pass
                    try:
                        writer.write(b"X")
                        await writer.drain()
                    except ConnectionError:
                        open_.discard(i)
            for _, w in conns:
                w.close()
            return len(open_)

        still_open = asyncio.run(trickle(300, 30))  # 3 s of trickling, 6x read_timeout

        async def stalled_body() -> bytes:
            r, w = await asyncio.open_connection(host, port)
            w.write(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n{\"items\": [")
            await w.drain()
            reply = await asyncio.wait_for(r.read(), 30)
            w.close()
            return reply

        stalled = asyncio.run(stalled_body())
        health = client.get("/health")
    assert still_open == 0
    assert stalled.startswith(b"HTTP/1.1 408") and b"read_timeout" in stalled
    assert health.status_code == 200


# --------------------------------------------------------------------------- deadlines


def test_number_protocols_meet_their_deadlines_with_the_neutral_reward(judge_double, tmp_path):
    """A slow judge: OpenRLHF and slime get a number by their own deadline (below their
    client's timeout), the native route its null by ``request_timeout``."""
    judge_double.delay = 5.0
    with serving(judge_double, tmp_path, request_timeout=3.0,
                 deadlines={"openrlhf": 0.5, "slime": 0.7}) as (client, _):
        register(client, "p1", "harbour")
        health = client.get("/health").json()
        rl = client.post("/get_reward", json={"query": ["Q: Line 1."], "prompts": ["Q: "],
                                              "labels": ["p1"]}).json()
        sl = client.post("/slime", json={"prompt": "Q", "response": "Line 2.",
                                         "label": "p1"}).json()
        text = client.get("/metrics").text
        judge_double.delay = 0.0
    assert health["deadlines"] == {"openrlhf": 0.5, "slime": 0.7, "verl": 240.0}
    assert "deadline of 0.5s exceeded" in rl["items"][0]["reason"]
    assert rl["rewards"] == [5.0] and rl["items"][0]["fallback_basis"] == "prior"
    assert "deadline of 0.7s exceeded" in sl["reason"] and sl["reward"] == 5.0
    assert metric(text, "longreward_deadline_exceeded_total") == 2
    assert metric(text, "longreward_neutral_rewards_total", basis="prior") == 2


def test_a_retry_after_the_deadline_pays_only_what_did_not_finish(judge_double, tmp_path):
    """The first round of judge calls finishes, the second is held past the OpenRLHF
    deadline: the sample gets the neutral reward in time, and the client's retry (with the
    judge well again) sends only the unfinished calls — the finished ones are in the store."""
    first_round = {"helpfulness", "logicality", "faithfulness_statements",
                   "completeness_extraction"}
    body = {"query": ["Q: Line 3 was approved."], "prompts": ["Q: "], "labels": ["p1"]}
    judge_double.delay = 2.0  # every call takes 2 s: the test sees round two start
    with serving(judge_double, tmp_path, deadlines={"openrlhf": 6.0}) as (client, _):
        register(client, "p1", "harbour")
        url = str(client.base_url)

        async def first_attempt() -> dict:
            async with httpx.AsyncClient(base_url=url, timeout=60) as ac:
                reply = asyncio.ensure_future(ac.post("/get_reward", json=body))
                while not set(steps(judge_double)) - first_round:  # round two has arrived
                    await asyncio.sleep(0.01)
                judge_double.hold = True  # ... and waits past the deadline
                return (await reply).json()

        cut_off = asyncio.run(first_attempt())
        before = len(steps(judge_double))
        judge_double.hold, judge_double.delay = False, 0.0
        retry = client.post("/get_reward", json=body).json()
        text = client.get("/metrics").text
    assert "deadline of 6s exceeded" in cut_off["items"][0]["reason"]
    assert cut_off["extra_logs"]["longreward_mask"] == [0.0] and cut_off["rewards"] == [5.0]
    assert retry["extra_logs"]["longreward_mask"] == [1.0]
    resent = steps(judge_double)[before:]
    assert resent and not set(resent) & first_round  # round one came from the store
    assert metric(text, "longreward_judge_cache_hits_total", step="helpfulness") == 1


@pytest.mark.parametrize("group_size", [None, 3])
def test_a_failed_sample_waits_for_its_siblings(judge_double, tmp_path, group_size):
    """OpenRLHF sends each sample alone. A sample that fails at once (its answer is only an
    end-of-turn token) waits for the other samples of its prompt, so its reward is their
    mean — exactly neutral in the group — not a guess made too early: for those already
    being judged; with ``neutral.group_size``, also for those that have not arrived yet."""
    prompt = "<|im_start|>user\nWhat did the board approve?<|im_end|>\n<|im_start|>assistant\n"
    judge_double.delay = 0.5
    with serving(judge_double, tmp_path, neutral={"group_size": group_size}) as (client, _):
        register(client, "p1", "harbour")
        url = str(client.base_url)

        async def step() -> list[dict]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as ac:
                async def one(answer: str) -> dict:
                    r = await ac.post("/get_reward", json={"query": [prompt + answer],
                                                           "prompts": [prompt],
                                                           "labels": ["p1"]})
                    return r.json()

                if group_size is None:  # the siblings are with the judge when it fails
                    judged = [asyncio.ensure_future(one(f"Line {k} was approved."))
                              for k in (1, 2)]
                    while not judge_double.count("/chat/completions"):
                        await asyncio.sleep(0.02)
                    failed = await one("<|im_end|>")
                else:  # it fails before its siblings are even sent
                    failed_task = asyncio.ensure_future(one("<|im_end|>"))
                    await asyncio.sleep(0.5)
                    judged = [asyncio.ensure_future(one(f"Line {k} was approved."))
                              for k in (1, 2)]
                    failed = await failed_task
                return [*(await asyncio.gather(*judged)), failed]

        judged_a, judged_b, failed = asyncio.run(step())
        judge_double.delay = 0.0
    assert failed["items"][0]["reason"].startswith("empty response")
    assert failed["items"][0]["fallback_basis"] == "group"
    assert failed["rewards"][0] == pytest.approx(
        (judged_a["rewards"][0] + judged_b["rewards"][0]) / 2)


def test_a_group_smaller_than_group_size_is_not_held_to_the_deadline(judge_double, tmp_path):
    """An evaluation sends fewer samples per prompt than training (OpenRLHF 4 instead of 8,
    verl 1): a failed one waits ``max_wait`` for the siblings that will not come, not the
    whole deadline (here 120 s, past the client's 30 s)."""
    with serving(judge_double, tmp_path, deadlines={"openrlhf": 120.0},
                 neutral={"group_size": 8, "max_wait": 0.5}) as (client, _):
        register(client, "p1", "harbour")
        r = client.post("/get_reward", timeout=30, json={
            "query": ["Q: Line 1.", "Q: "], "prompts": ["Q: ", "Q: "], "labels": ["p1", "p1"]})
    assert r.status_code == 200
    out = r.json()
    assert out["extra_logs"]["longreward_mask"] == [1.0, 0.0]
    assert out["rewards"][1] == pytest.approx(out["rewards"][0])  # its group: one judged


# --------------------------------------------------------------------------- processes

WORKER = textwrap.dedent("""
    import json, os, sys, time
    from longreward.serve import LocalRewards, ScoreItem, load_serve_options
    config, barrier = sys.argv[1], sys.argv[2]
    rewards = LocalRewards(load_serve_options(config))
    open(os.path.join(barrier, f"ready-{os.getpid()}"), "w").close()
    while not os.path.exists(os.path.join(barrier, "go")):  # all score at the same moment
        time.sleep(0.01)
    items = [ScoreItem(response=f"Line {k} was approved.", prompt_id="p1", id=str(k))
             for k in range(2)]
    out = rewards.score(items, fill="neutral")
    snap = rewards.service.scorer.client.snapshot()
    print(json.dumps({"rewards": [r.reward for r in out], "masks": [r.mask for r in out],
                      "cache_hits": snap["cache_hits"]}))
    rewards.close()
""")


def test_reward_processes_share_a_run_directory_and_their_judge_calls(judge_double, tmp_path):
    """Three processes on one serve config (a trainer's reward workers) score the same
    samples at the same moment: no lock error, the same rewards, and no judge call made
    twice — a process waits for the call another one is making (a claim in the run store)
    or finds it cached."""
    import time

    (tmp_path / "prompts.jsonl").write_text(json.dumps(
        {"id": "p1", "context": document("harbour"), "query": "What did the board do?"}) + "\n")
    config = tmp_path / "serve.yaml"
    config.write_text(f"score:\n  judge:\n    model: judge-double\n    base_urls: "
                      f"[{judge_double.base_url}]\n    timeout: 20\n"
                      f"run_dir: run\nprompts: prompts.jsonl\n")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    judge_double.delay = 0.2
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "LONGREWARD_API_KEY": "sk-workers-test"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(config), str(barrier)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    try:
        deadline = time.monotonic() + 180
        while len(list(barrier.glob("ready-*"))) < 3:
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                [p.communicate()[1][-2000:] for p in procs if p.poll() is not None]
            time.sleep(0.05)
        (barrier / "go").touch()
        outs = []
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        judge_double.delay = 0.0
    assert all(o["masks"] == [1, 1] for o in outs)
    assert outs[0]["rewards"] == outs[1]["rewards"] == outs[2]["rewards"]
    bodies = [json.dumps(r["body"], sort_keys=True) for r in judge_double.requests
              if r["path"].endswith("/chat/completions")]
    assert bodies and len(bodies) == len(set(bodies))  # no judge call made twice
    # each call made by one process was a cache hit for the two others
    assert sum(o["cache_hits"] for o in outs) >= 2 * len(bodies)
