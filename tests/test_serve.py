"""``longreward serve`` over real HTTP on 127.0.0.1: the reward service in a uvicorn thread,
the judge double as the judge, SQLite run stores in temp dirs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from longreward import LongReward
from longreward.errors import MissingDependencyError
from longreward.judge import ModelClient, create_apis
from longreward.retrieval import BM25Retriever
from longreward.serve import RewardService, ServeOptions, ServerThread, create_app

from scripted_judge import step_of

JUDGE_KEY = "sk-judge-SECRET-9f8e7d6c5b4a"
TOKEN = "serve-token-SECRET-0a1b2c3d4e5f"


def document(tag: str, n: int = 50) -> str:
    return "\n\n".join(f"Part {i} of the {tag} ledger: the {tag} board approved line {i} worth "
                       f"{i * 1000 + 7} coins on day {i % 28 + 1}." for i in range(n))


def options(double: Any, tmp_path: Path, **extra: Any) -> ServeOptions:
    score = extra.pop("score", {})
    return ServeOptions.model_validate({
        "score": {"judge": {"model": "judge-double", "base_urls": [double.base_url],
                            "timeout": 5, "max_retries": 2, **score.pop("judge", {})},
                  **score},
        "run_dir": str(tmp_path / "serve.run"), **extra})


def service(double: Any, opts: ServeOptions) -> RewardService:
    """A service whose judge client backs off in milliseconds (the faults tests retry)."""
    j = opts.score.judge
    apis = create_apis("openai_compatible", "judge-double", base_urls=[double.base_url],
                       api_key=JUDGE_KEY)
    client = ModelClient(apis, max_retries=j.max_retries, timeout=j.timeout, backoff_base=0.01,
                         backoff_max=0.05, structured_output=j.structured_output)
    return RewardService(opts, scorer=LongReward(client, options=opts.score,
                                                 retriever=BM25Retriever()))


@contextmanager
def serving(double: Any, tmp_path: Path, token: str | None = None, **extra: Any
            ) -> Iterator[tuple[httpx.Client, RewardService]]:
    opts = options(double, tmp_path, **extra)
    svc = service(double, opts)
    old = os.environ.pop("LONGREWARD_SERVE_TOKEN", None)
    if token:
        os.environ["LONGREWARD_SERVE_TOKEN"] = token
    try:
        app = create_app(svc)
    finally:
        os.environ.pop("LONGREWARD_SERVE_TOKEN", None)
        if old is not None:
            os.environ["LONGREWARD_SERVE_TOKEN"] = old
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with ServerThread(app) as url, httpx.Client(base_url=url, timeout=60,
                                                headers=headers) as client:
        yield client, svc


def register(client: httpx.Client, pid: str, tag: str, query: str | None = None) -> dict:
    r = client.post("/documents", json={"documents": [
        {"id": pid, "context": document(tag), "query": query or f"What did the {tag} board "
                                                                 "approve?"}]})
    assert r.status_code == 200, r.text
    return r.json()


def steps(double: Any) -> list[str]:
    """The scoring step of each chat request the judge received (the client's reply-format
    probe carries no scoring prompt and is left out)."""
    return [step for r in double.requests if r["path"].endswith("/chat/completions")
            and (step := steps_of_one(r["body"])) is not None]


def judged_texts(double: Any, step: str) -> list[str]:
    return [r["body"]["messages"][-1]["content"] for r in double.requests
            if r["path"].endswith("/chat/completions") and steps_of_one(r["body"]) == step]


def steps_of_one(body: dict) -> str | None:
    try:
        return step_of(body)[0]
    except AssertionError:
        return None


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{prefix} not in metrics")


# --------------------------------------------------------------------------- native /score


def test_native_score_batches_items_of_a_prompt_and_reports_each(judge_double, tmp_path):
    with serving(judge_double, tmp_path) as (client, _):
        register(client, "p1", "harbour")
        items = [{"id": f"s{k}", "prompt_id": "p1",
                  "response": f"The board approved line {k} worth {k * 1000 + 7} coins."}
                 for k in range(4)]
        items += [
            {"id": "inline", "context": document("mill"), "query": "What did the mill do?",
             "response": "The mill board approved line 2."},
            {"id": "unknown", "prompt_id": "nope", "response": "Something."},
            {"id": "empty", "prompt_id": "p1", "response": "   "},
            {"id": "noquery", "context": document("mill"), "response": "Line 2."},
        ]
        r = client.post("/score", json={"items": items})
        assert r.status_code == 200, r.text
        out = r.json()
    got = {it["id"]: it for it in out["items"]}
    assert [it["id"] for it in out["items"]] == [it["id"] for it in items]
    assert out["summary"] == {"scored": 5, "unscored": 0, "error": 3}
    for k in range(4):
        it = got[f"s{k}"]
        assert it["status"] == "scored" and it["mask"] == 1 and it["reason"] is None
        assert 0.0 <= it["reward"] <= 10.0
        assert set(it["scores"]) == {"helpfulness", "logicality", "faithfulness", "completeness"}
        assert it["prompt_id"] == "p1" and it["document"]
    assert got["inline"]["status"] == "scored"
    assert got["unknown"]["reward"] is None and got["unknown"]["mask"] == 0
    assert "unknown prompt id 'nope'" in got["unknown"]["reason"]
    assert "empty response" in got["empty"]["reason"]
    assert "no question" in got["noquery"]["reason"]
    # Per-document work is shared: one extraction per chunk of each (document, question),
    # however many answers of the prompt were in the batch.
    calls = steps(judge_double)
    assert calls.count("completeness_extraction") == 2  # 2 prompts, one chunk each
    assert calls.count("helpfulness") == 5


def test_bad_request_shape_is_422(judge_double, tmp_path):
    with serving(judge_double, tmp_path) as (client, _):
        assert client.post("/score", json={"items": [{"prompt_id": "x"}]}).status_code == 422
        assert client.post("/score", json={"itemz": []}).status_code == 422
        r = client.post("/score", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422


# --------------------------------------------------------------------------- OpenRLHF


def test_openrlhf_get_reward(judge_double, tmp_path):
    prompt = "<|im_start|>user\nWhat did the harbour board approve?<|im_end|>\n<|im_start|>assistant\n"
    answer = "The harbour board approved line 3 worth 3007 coins."
    with serving(judge_double, tmp_path) as (client, _):
        register(client, "p1", "harbour")
        body = {"query": [prompt + answer + "<|im_end|><|endoftext|>", "<s>" + prompt + "x",
                          prompt + "Line 5 was approved.", prompt + "Unregistered."],
                "prompts": [prompt, prompt, prompt, prompt],
                "labels": ["p1", "p1", json.dumps({"prompt_id": "p1"}), "ghost"]}
        r = client.post("/get_reward", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        empty = client.post("/get_reward", json={"query": [], "prompts": [], "labels": []})
        mismatch = client.post("/get_reward", json={"query": ["a", "b"], "prompts": ["a"],
                                                     "labels": ["p1", "p1"]})
        old_client = client.post("/get_reward", json={"query": [prompt + answer]})
        no_labels = client.post("/get_reward", json={"query": [prompt + answer],
                                                      "prompts": [prompt], "labels": []})
    n = len(body["query"])
    assert len(out["rewards"]) == len(out["scores"]) == len(out["items"]) == n
    assert all(len(v) == n for v in out["extra_logs"].values())
    # OpenRLHF turns every value into a tensor: numbers only, never null
    assert all(isinstance(x, float) for v in out["extra_logs"].values() for x in v)
    assert all(isinstance(x, float) for x in out["rewards"] + out["scores"])
    assert out["scores"][0] == pytest.approx(out["rewards"][0] / 10)
    assert out["extra_logs"]["longreward_mask"] == [1.0, 0.0, 1.0, 0.0]
    assert out["extra_logs"]["longreward_fallback"] == [0.0, 1.0, 0.0, 1.0]
    assert out["extra_logs"]["longreward_prompt_seen"] == [1.0, 0.0, 1.0, 1.0]
    # The failed sample of p1 gets the mean of p1's judged samples: neutral in its group.
    assert "holds no part of prompts[1]" in out["items"][1]["reason"]
    assert out["items"][1]["fallback_basis"] == "group"
    assert out["rewards"][1] == pytest.approx((out["rewards"][0] + out["rewards"][2]) / 2)
    # An unknown prompt has no group yet: the running mean of every judged reward.
    assert "unknown prompt id 'ghost'" in out["items"][3]["reason"]
    assert out["items"][3]["fallback_basis"] == "running mean"
    assert out["rewards"][3] == pytest.approx(out["rewards"][1])
    # The judge read the answer without the chat template's end-of-turn tokens.
    judged = judged_texts(judge_double, "helpfulness")
    assert any(answer in t for t in judged)
    assert not any("<|im_end|>" in t or "<|endoftext|>" in t for t in judged)
    assert empty.status_code == 200
    assert empty.json()["rewards"] == [] and empty.json()["scores"] == []
    assert mismatch.status_code == 422 and "'prompts' has 1 entries" in mismatch.json()["error"]
    assert old_client.status_code == 200
    assert "no 'prompts' in the request" in old_client.json()["items"][0]["reason"]
    assert old_client.json()["rewards"] == [pytest.approx(out["rewards"][1])]
    # an empty labels list (a dataset without the label column) is per item, not a 422
    assert no_labels.status_code == 200
    assert no_labels.json()["extra_logs"]["longreward_mask"] == [0.0]
    assert "names no registered prompt" in no_labels.json()["items"][0]["reason"]


def test_split_query_finds_the_response_after_a_cut_prompt():
    from longreward.serve._protocols import split_query

    prompt = ("<|im_start|>user\n" + document("harbour", 20) + "\n\nWhat was approved?"
              "<|im_end|>\n<|im_start|>assistant\n")
    answer = "Line 3 was approved."
    assert split_query(prompt + answer, prompt) == (answer, 1.0)
    # cut on the left (OpenRLHF 0.9.1+), as a byte-level decoder leaves a split character,
    # and as a SentencePiece decoder drops the first token's leading space
    space = prompt.index(" ", 700)
    for seen in ("\ufffd\ufffd" + prompt[700:], prompt[700:], prompt[space + 1:]):
        got = split_query(seen + answer, prompt)
        assert got is not None and got[0] == answer
        assert got[1] == pytest.approx(len(seen.lstrip("\ufffd")) / len(prompt))
    # cut on the right (OpenRLHF 0.9.0): the question is gone
    got = split_query(prompt[:500] + "\ufffd" + answer, prompt)
    assert got == (answer, pytest.approx(500 / len(prompt)))
    # nothing of the prompt, or the prompt's end after text that is not the prompt's
    assert split_query("Something else entirely. " + answer, prompt) is None
    assert split_query("<s>" + prompt + answer, prompt) is None
    assert split_query(prompt.replace("ledger", "Ledger") + answer, prompt) is None


# --------------------------------------------------------------------------- slime


def test_slime_per_sample(judge_double, tmp_path):
    with serving(judge_double, tmp_path) as (client, _):
        register(client, "p1", "harbour")
        sample = {"prompt": "What did the board approve?", "response": "Line 4.", "label": "p1"}
        as_dict = client.post("/slime", json=sample).json()
        as_number = client.post("/slime", params={"format": "number"}, json=sample).json()
        unknown = client.post("/slime", json={**sample, "label": "ghost"}).json()
        unknown_n = client.post("/slime", params={"format": "number"},
                                json={**sample, "label": "ghost"})
        by_object = client.post("/slime", json={**sample, "label": {
            "prompt_id": "p1", "query": "Which line was approved on day 5?"}}).json()
    assert as_dict["mask"] == 1 and 0 <= as_dict["reward"] <= 10
    assert as_number == pytest.approx(as_dict["reward"])  # same item: judge calls cached
    # slime's group normalisation runs torch.tensor on the rewards: a number, the neutral one
    assert unknown["mask"] == 0 and "ghost" in unknown["reason"] and unknown["fallback"]
    assert unknown["fallback_basis"] == "running mean"
    assert unknown["reward"] == pytest.approx(as_dict["reward"])
    assert unknown_n.status_code == 200 and unknown_n.json() == pytest.approx(unknown["reward"])
    assert by_object["status"] == "scored"
    queries = [r["body"]["messages"][-1]["content"] for r in judge_double.requests]
    assert any("Which line was approved on day 5?" in q for q in queries)


# --------------------------------------------------------------------------- documents


def test_document_registration(judge_double, tmp_path):
    with serving(judge_double, tmp_path) as (client, _):
        first = register(client, "p1", "harbour")
        assert first["documents"][0]["status"] == "registered"
        assert register(client, "p1", "harbour")["documents"][0]["status"] == "unchanged"
        clash = client.post("/documents", json={"documents": [
            {"id": "p1", "context": document("mill"), "query": "?"},
            {"id": "p2", "context": document("mill"), "query": "What did the mill do?"}]})
        assert clash.status_code == 409
        st = {d["id"]: d for d in clash.json()["documents"]}
        assert st["p1"]["status"] == "conflict" and "replace" in st["p1"]["reason"]
        assert st["p2"]["status"] == "registered"  # the others still go in
        replaced = client.post("/documents", json={"replace": True, "documents": [
            {"id": "p1", "context": document("mill"), "query": "What did the mill do?"}]})
        assert replaced.json()["documents"][0]["status"] == "replaced"
        got = client.get("/documents/p1").json()
        assert got["query"] == "What did the mill do?"
        assert got["characters"] == len(document("mill"))
        assert client.get("/documents/ghost").status_code == 404
        assert client.get("/health").json()["documents"] == 1  # p1 and p2: one text


def test_restart_keeps_documents_and_judge_calls(judge_double, tmp_path):
    items = {"items": [{"prompt_id": "p1", "response": f"Line {k} was approved."}
                       for k in range(3)]}
    with serving(judge_double, tmp_path) as (client, _):
        register(client, "p1", "harbour")
        before = client.post("/score", json=items).json()
    paid = judge_double.count("/chat/completions")
    assert paid > 0
    with serving(judge_double, tmp_path) as (client, svc):
        assert svc.n_prompts == 1  # registered in the run store, not re-sent
        after = client.post("/score", json=items).json()
        metrics = client.get("/metrics").text
    assert judge_double.count("/chat/completions") == paid  # every judge call was cached
    assert [i["reward"] for i in after["items"]] == [i["reward"] for i in before["items"]]
    assert metric(metrics, "longreward_judge_cache_hits_total", step="helpfulness") == 3
    assert metric(metrics, "longreward_judge_requests_total", step="helpfulness") == 0


def test_prompts_file_registered_at_start(judge_double, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "context": document("harbour"), "query": "What was approved?"},
        {"id": "b", "context": document("mill"), "query": "What did the mill do?"},
        {"id": "bad", "context": "", "query": "?"}]) + "\n")
    with serving(judge_double, tmp_path, prompts=str(prompts)) as (client, svc):
        assert svc.n_prompts == 2 and len(svc.prompt_file_errors) == 1
        r = client.post("/get_reward", json={"query": ["Q: A", "Q: B"], "prompts": ["Q: ", "Q: "],
                                             "labels": ["a", "b"]}).json()
    assert r["extra_logs"]["longreward_mask"] == [1.0, 1.0]


# --------------------------------------------------------------------------- failures


def test_all_unscored_is_null_with_mask_and_reason_then_fallback(judge_double, tmp_path, caplog):
    judge_double.responder = lambda body: "I would rather not give a verdict."
    items = {"items": [{"prompt_id": "p1", "response": "Line 1."}]}
    judge = {"judge": {"attempts": 2, "structured_output": "text"}}
    with serving(judge_double, tmp_path, score=dict(judge)) as (client, _):
        register(client, "p1", "harbour")
        item = client.post("/score", json=items).json()["items"][0]
        rl = client.post("/get_reward", json={"query": ["Q: Line 1."], "prompts": ["Q: "],
                                              "labels": ["p1"]}).json()
        metrics = client.get("/metrics").text
    assert item["status"] == "unscored" and item["reward"] is None and item["mask"] == 0
    assert item["reason"].startswith("all dimensions unscored")
    assert set(item["unscored"]) == {"helpfulness", "logicality", "faithfulness", "completeness"}
    assert item["fallback"] is False
    # OpenRLHF needs a number: with nothing judged yet, the prior (a group whose samples all
    # get one number has no advantage, whatever the number)
    assert rl["rewards"] == [5.0] and rl["extra_logs"]["longreward_mask"] == [0.0]
    assert rl["items"][0]["fallback_basis"] == "prior"
    assert metric(metrics, "longreward_items_total", status="unscored") == 2
    assert metric(metrics, "longreward_unscored_dimensions_total", dimension="faithfulness") == 2
    assert metric(metrics, "longreward_fallback_rewards_total") == 0
    assert metric(metrics, "longreward_neutral_rewards_total", basis="prior") == 1

    caplog.set_level(logging.WARNING, logger="longreward.serve")
    with serving(judge_double, tmp_path / "2", score=dict(judge), fallback_reward=-1.0) as (
            client, _):
        register(client, "p1", "harbour")
        item = client.post("/score", json=items).json()["items"][0]
        rl = client.post("/get_reward", json={"query": ["Q: Line 1."], "prompts": ["Q: "],
                                              "labels": ["p1"]}).json()
        metrics = client.get("/metrics").text
    assert item["reward"] == -1.0 and item["fallback"] is True and item["mask"] == 0
    assert item["reason"].startswith("all dimensions unscored")
    assert rl["rewards"] == [-1.0] and rl["extra_logs"]["longreward_fallback"] == [1.0]
    assert rl["extra_logs"]["longreward_mask"] == [0.0]
    assert rl["items"][0]["fallback_basis"] == "fixed"
    assert metric(metrics, "longreward_fallback_rewards_total") == 2
    assert metric(metrics, "longreward_neutral_rewards_total", basis="prior") == 0
    assert sum("fallback reward -1" in r.getMessage() for r in caplog.records) == 2


def test_deadline_returns_unscored_items_in_time(judge_double, tmp_path):
    judge_double.delay = 5.0
    with serving(judge_double, tmp_path, request_timeout=0.5) as (client, _):
        register(client, "p1", "harbour")
        t0 = time.monotonic()
        item = client.post("/score", json={"items": [{"prompt_id": "p1", "response": "L1."}]}
                           ).json()["items"][0]
        took = time.monotonic() - t0
        metrics = client.get("/metrics").text
        judge_double.delay = 0.0
    assert took < 4.0  # well before the judge's 5 s
    assert item["status"] == "unscored" and item["reward"] is None and item["mask"] == 0
    assert "deadline of 0.5s exceeded" in item["reason"]
    assert metric(metrics, "longreward_deadline_exceeded_total") == 1


# --------------------------------------------------------------------------- operations


def test_bearer_auth_and_no_secret_in_logs(judge_double, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    judge_double.required_api_key = JUDGE_KEY
    with serving(judge_double, tmp_path, token=TOKEN) as (client, _):
        url = str(client.base_url)
        register(client, "p1", "harbour")
        ok = client.post("/score", json={"items": [{"prompt_id": "p1", "response": "L1."}]})
        with httpx.Client(base_url=url, timeout=30) as anon:
            missing = anon.post("/score", json={"items": []})
            wrong = anon.post("/get_reward", json={"query": []},
                              headers={"Authorization": "Bearer not-the-token"})
            basic = anon.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
            health = anon.get("/health")
    assert ok.status_code == 200 and ok.json()["items"][0]["status"] == "scored"
    for r in (missing, wrong, basic):
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert "LONGREWARD_SERVE_TOKEN" in r.json()["error"]
        assert TOKEN not in r.text
    assert health.status_code == 200
    out, err = capfd.readouterr()
    logged = out + err + caplog.text
    assert TOKEN not in logged and JUDGE_KEY not in logged


def test_body_cap_413(judge_double, tmp_path):
    with serving(judge_double, tmp_path, max_body_bytes=4096) as (client, _):
        big = {"documents": [{"id": "p1", "context": document("harbour", 200), "query": "?"}]}
        r = client.post("/documents", json=big)
        assert r.status_code == 413 and "max_body_bytes=4096" in r.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
            data = json.dumps(big).encode()
            for i in range(0, len(data), 1000):
                yield data[i:i + 1000]

        r = client.post("/documents", content=chunks(),
                        headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert client.get("/health").json()["prompts"] == 0
        assert client.post("/documents", json={"documents": [
            {"id": "p1", "context": document("harbour", 5), "query": "?"}]}).status_code == 200


def test_concurrency_limit_503_with_retry_after(judge_double, tmp_path):
    judge_double.delay = 1.0
    with serving(judge_double, tmp_path, max_concurrent_requests=1, retry_after=7) as (
            client, svc):
        register(client, "p1", "harbour")
        url = str(client.base_url)

        async def both() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as ac:
                first = asyncio.ensure_future(ac.post("/score", json={"items": [
                    {"prompt_id": "p1", "response": "Line 1."}]}))
                for _ in range(200):  # until the first request holds the only slot
                    if judge_double.count("/chat/completions"):
                        break
                    await asyncio.sleep(0.02)
                second = await ac.post("/get_reward", json={"query": ["Q: L"], "prompts":
                                                            ["Q: "], "labels": ["p1"]})
                health = await ac.get("/health")  # not limited
                return await first, second, health

        first, second, health = asyncio.run(both())
        judge_double.delay = 0.0
        metrics = client.get("/metrics").text
    assert first.status_code == 200
    assert second.status_code == 503 and second.headers["retry-after"] == "7"
    assert "busy" in second.json()["error"]
    assert health.status_code == 200
    assert metric(metrics, "longreward_requests_total", endpoint="/get_reward",
                  status="503") == 1


def test_metrics_cover_requests_latency_judge_and_cache(judge_double, tmp_path):
    with serving(judge_double, tmp_path) as (client, _):
        register(client, "p1", "harbour")
        for _ in range(2):
            client.post("/score", json={"items": [{"prompt_id": "p1", "response": "Line 1."}]})
        client.get("/nowhere")
        text = client.get("/metrics").text
    assert metric(text, "longreward_requests_total", endpoint="/score", status="200") == 2
    assert metric(text, "longreward_requests_total", endpoint="other", status="404") == 1
    assert metric(text, "longreward_request_seconds_count", endpoint="/score") == 2
    assert metric(text, "longreward_request_overhead_seconds_count", endpoint="/score") == 2
    assert metric(text, "longreward_items_total", status="scored") == 2
    assert metric(text, "longreward_judge_requests_total", step="completeness.extract") == 1
    assert metric(text, "longreward_judge_cache_hits_total", step="helpfulness") == 1
    assert metric(text, "longreward_prompts_registered") == 1
    assert metric(text, "longreward_judge_tokens_total", kind="prompt") > 0


def test_missing_extra_is_one_line_with_the_fix(judge_double, tmp_path, monkeypatch):
    from longreward.serve import _metrics, _server

    svc = service(judge_double, options(judge_double, tmp_path))
    for module, call in (("fastapi", lambda: create_app(svc)),
                         ("prometheus_client", lambda: _metrics.Metrics(svc)),
                         ("uvicorn", lambda: _server.ServerThread(None).start())):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
        with pytest.raises(MissingDependencyError) as info:
            call()
        assert str(info.value).endswith("Fix: pip install 'longreward[serve]'")
        assert "\n" not in str(info.value)
        monkeypatch.delitem(sys.modules, module)


def test_announced_url_accepts_connections_before_uvicorn_has_started(judge_double, tmp_path):
    """`longreward serve` prints its URL before uvicorn runs; a client that connects at
    once must wait in the listen queue and then be served, not be refused (a CI flake)."""
    import socket
    import threading

    import uvicorn

    from longreward.serve._server import _config, bind, url_of

    sock = bind("127.0.0.1", 0)
    host, port = url_of(sock).removeprefix("http://").rsplit(":", 1)
    early = socket.create_connection((host, int(port)), timeout=30)  # refused before the fix
    early.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    app = create_app(service(judge_double, options(judge_double, tmp_path)))
    server = uvicorn.Server(_config(app, access_log=False, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        reply = b""
        while chunk := early.recv(65536):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    finally:
        early.close()
        server.should_exit = True
        thread.join(timeout=30)


def test_import_stays_light():
    code = ("import sys, longreward, longreward.serve, longreward.serve.verl, "
            "longreward.serve.trl, longreward.cli; "
            "print([m for m in ('fastapi', 'uvicorn', 'prometheus_client', 'torch') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_example_config_validates():
    from longreward.serve import load_serve_options

    example = Path(__file__).resolve().parents[1] / "examples" / "serve.yaml"
    opts = load_serve_options(example)
    assert opts.run_dir is not None and opts.run_dir.is_absolute()
    assert opts.score.judge.provider == "dry_run"


# --------------------------------------------------------------------------- the command


def _start_cli(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "longreward", "serve", *args],
                            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    lines = []
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "longreward serve on " in line:
            return proc, line.split("longreward serve on ")[1].split(": POST")[0].strip()
    proc.kill()
    raise AssertionError("server did not start:\n" + "".join(lines) + proc.stderr.read())


def test_cli_servers_share_a_run_dir_and_a_stage_there_is_refused(judge_double, tmp_path):
    """Two servers on one run directory (a trainer's reward processes) both serve, the
    second from the first's judge calls; a stage, which writes outputs, is refused there."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "p1", "context": document("harbour"),
                                   "query": "What was approved?"}) + "\n")
    config = tmp_path / "serve.yaml"
    config.write_text("score:\n  judge:\n    model: judge-double\n    timeout: 5\n"
                      "run_dir: state\nport: 0\nfallback_reward: 0.0\n")
    env = {"LONGREWARD_SERVE_TOKEN": TOKEN, "LONGREWARD_API_KEY": JUDGE_KEY}
    args = ["--config", str(config), "--prompts", str(prompts), "--base-url",
            judge_double.base_url]
    body = {"query": ["Q: Line 3 was approved."], "prompts": ["Q: "], "labels": ["p1"]}
    procs = []
    try:
        for _ in range(2):
            procs.append(_start_cli(args, env))
        replies = []
        for _, url in procs:
            with httpx.Client(base_url=url, timeout=60,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                replies.append(client.post("/get_reward", json=body))
            if len(replies) == 1:
                paid = judge_double.count("/chat/completions")
        assert [r.status_code for r in replies] == [200, 200]
        assert [r.json()["extra_logs"]["longreward_mask"] for r in replies] == [[1.0], [1.0]]
        assert replies[1].json()["rewards"] == replies[0].json()["rewards"]
        assert judge_double.count("/chat/completions") == paid  # the second paid nothing
        assert (tmp_path / "state" / "longreward.sqlite").exists()  # relative to the config
        data = tmp_path / "answers.jsonl"
        data.write_text(json.dumps({"id": "a", "context": document("mill"), "query": "Why?",
                                    "response": "Because."}) + "\n")
        stage = subprocess.run([sys.executable, "-m", "longreward", "score", str(data), "-o",
                                str(tmp_path / "scored.jsonl"), "--run-dir",
                                str(tmp_path / "state"), "--base-url", judge_double.base_url,
                                "--model", "judge-double"],
                               env={**os.environ, "NO_COLOR": "1", **env},
                               capture_output=True, text=True, timeout=120)
        assert stage.returncode == 2, stage.stderr
        assert "reward service" in " ".join(stage.stderr.split())  # rich wraps long lines
    finally:
        errs = []
        for proc, _ in procs:
            proc.send_signal(signal.SIGINT)
            try:
                errs.append(proc.communicate(timeout=30)[1])
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    for (proc, _), err in zip(procs, errs, strict=True):
        # uvicorn shuts down gracefully, then exits as interrupted (like `score`: 130)
        assert proc.returncode == 130, err
        assert "Application shutdown complete" in err and "Traceback" not in err
        assert TOKEN not in err and JUDGE_KEY not in err


def test_cli_refuses_a_named_token_variable_that_is_not_set(tmp_path):
    out = subprocess.run([sys.executable, "-m", "longreward", "serve", "--dry-run",
                          "--token-env", "NO_SUCH_TOKEN_VAR", "--run-dir", str(tmp_path / "r")],
                         env={**os.environ, "NO_COLOR": "1"}, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "NO_SUCH_TOKEN_VAR" in out.stderr and "not set" in out.stderr


def test_cli_takes_scores_judge_and_scoring_flags(judge_double, tmp_path):
    """serve borrows score's flags (same names, same meaning, under score: of serve.yaml),
    plus its own --max-body-bytes."""
    args = ["--base-url", judge_double.base_url, "--model", "judge-double", "--port", "0",
            "--run-dir", str(tmp_path / "state"), "--dimensions", "helpfulness,logicality",
            "--weight", "helpfulness=3", "--weight", "logicality=1", "--max-retries", "0",
            "--max-body-bytes", "2048",
            "--log-level", "warning"]
    proc, url = _start_cli(args, {"LONGREWARD_API_KEY": JUDGE_KEY})
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            item = {"context": document("harbour"), "query": "What was approved?",
                    "response": "Line 3."}
            assert client.post("/score", json={"items": [item]}).status_code == 413
            item["context"] = "The harbour board approved line 3 worth 3007 coins."
            r = client.post("/score", json={"items": [item]})
        assert r.status_code == 200, r.text
        (out,) = r.json()["items"]
        assert set(out["scores"]) == {"helpfulness", "logicality"}
        h, lg = out["scores"]["helpfulness"], out["scores"]["logicality"]
        assert out["reward"] == pytest.approx((3 * h + lg) / 4)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_a_document_given_as_a_list_of_strings_is_one_text(judge_double, tmp_path):
    """As the file stages take it: a list of sentences or paragraphs is the same document,
    joined the same way, so it registers as the same text and scores the same."""
    text = document("harbour")
    paragraphs = text.split("\n\n")
    assert len(paragraphs) > 1
    with serving(judge_double, tmp_path) as (client, _):
        as_list = client.post("/documents", json={"documents": [
            {"id": "p1", "context": paragraphs, "query": "What was approved?"}]})
        assert as_list.status_code == 200
        again = register(client, "p1", "harbour", query="What was approved?")
        assert again["documents"][0]["status"] == "unchanged"  # the same text
        item = {"response": "Line 3 was approved.", "query": "What was approved?"}
        by_list = client.post("/score", json={"items": [{**item, "context": paragraphs}]})
        by_text = client.post("/score", json={"items": [{**item, "context": text}]})
        assert by_list.status_code == by_text.status_code == 200
        a, b = by_list.json()["items"][0], by_text.json()["items"][0]
        assert a["status"] == "scored" and a["reward"] == b["reward"]
        assert a["document"] == b["document"]
        # an element that is not a string: a 422 naming it, not a 500
        bad = client.post("/score", json={"items": [{**item, "context": ["ok", 3]}]})
        assert bad.status_code == 422 and "context[1]" in bad.text
