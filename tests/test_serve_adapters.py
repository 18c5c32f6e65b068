"""The in-process trainer adapters: verl's ``compute_score`` (loaded by file path, as verl
does) and TRL's async reward function, scoring in this process or on a running server; the
judge double over real HTTP."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import longreward.serve.verl as verl_module
from longreward.errors import UsageError
from longreward.serve import RewardService, ServerThread, _backends, create_app
from longreward.serve.trl import completion_text, longreward_reward
from test_serve import document, options, steps


@pytest.fixture(autouse=True)
def fresh_backends(monkeypatch) -> Iterator[None]:
    """Each test gets its own backends; local ones are closed (run directory unlocked)."""
    monkeypatch.setenv("LONGREWARD_API_KEY", "sk-adapter-test")
    for name in ("LONGREWARD_SERVE_CONFIG", "LONGREWARD_SERVE_URL", "LONGREWARD_SERVE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    yield
    with _backends._cache_lock:
        backends = list(_backends._cache.values())
        _backends._cache.clear()
    for b in backends:
        if isinstance(b, _backends.LocalRewards):
            b.close()


def write_config(double: Any, tmp_path: Path, fallback: float | None = 0.0) -> Path:
    (tmp_path / "prompts.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"id": "p1", "context": document("harbour"), "query": "What did the board approve?"},
        {"id": "p2", "context": document("mill"), "query": "What did the mill do?"}]) + "\n")
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(
        f"score:\n  judge:\n    model: judge-double\n    base_urls: [{double.base_url}]\n"
        f"    timeout: 5\nrun_dir: run\nprompts: prompts.jsonl\n"
        f"fallback_reward: {'null' if fallback is None else fallback}\n")
    return cfg


def extraction_calls(double: Any) -> int:
    return steps(double).count("completeness_extraction")


def load_like_verl() -> Any:
    """verl's loader: the file by path, as a module outside its package."""
    spec = importlib.util.spec_from_file_location("custom_module", verl_module.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- verl


def test_verl_compute_score_from_reward_manager_threads(judge_double, tmp_path):
    cfg = write_config(judge_double, tmp_path)
    compute_score = load_like_verl().compute_score

    def one(k: int) -> dict[str, float]:
        return compute_score(data_source="longbench", solution_str=f"Line {k} was approved.",
                             ground_truth="p1", extra_info={"index": k}, config=str(cfg))

    with ThreadPoolExecutor(8) as pool:  # verl's reward managers call from a thread pool
        results = list(pool.map(one, range(8)))
    for r in results:
        assert set(r) == {"score", "longreward_mask", "longreward_fallback"}
        assert 0.0 <= r["score"] <= 10.0 and r["longreward_mask"] == 1.0
    assert extraction_calls(judge_double) == 1  # 8 samples, one shared extraction
    missing = compute_score("longbench", "Line 1.", "ghost", None, config=str(cfg))
    assert missing == {"score": 0.0, "longreward_mask": 0.0, "longreward_fallback": 1.0}
    by_object = compute_score("longbench", "Line 1.", {"prompt_id": "p2"}, None,
                              config=str(cfg))
    assert by_object["longreward_mask"] == 1.0


def test_verl_async_variant_on_changing_loops(judge_double, tmp_path, monkeypatch):
    cfg = write_config(judge_double, tmp_path)
    monkeypatch.setenv("LONGREWARD_SERVE_CONFIG", str(cfg))  # as verl's workers would find it
    fn = load_like_verl().compute_score_async
    assert inspect.iscoroutinefunction(fn)

    async def batch(pid: str) -> list[dict[str, float]]:
        return list(await asyncio.gather(*(
            fn(data_source="x", solution_str=f"Line {k}.", ground_truth=pid,
               extra_info={"query": "Which line was approved on day 3?"} if k == 0 else {},
               reward_router_address=None) for k in range(4))))

    first = asyncio.run(batch("p1"))
    second = asyncio.run(batch("p2"))  # a new event loop: the backend's own loop carries on
    assert all(r["longreward_mask"] == 1.0 for r in first + second)
    queries = [r["body"]["messages"][-1]["content"] for r in judge_double.requests]
    assert any("Which line was approved on day 3?" in q for q in queries)


def test_verl_gives_a_failed_sample_the_neutral_reward(judge_double, tmp_path):
    """Without a fallback, a sample that cannot be scored gets the mean of its prompt's
    judged samples (its advantage under group normalisation is 0), else the running mean."""
    cfg = write_config(judge_double, tmp_path, fallback=None)
    compute_score = load_like_verl().compute_score
    judged = [compute_score("x", f"Line {k} was approved.", "p1", {}, config=str(cfg))
              for k in range(3)]
    assert all(r["longreward_mask"] == 1.0 for r in judged)
    mean = sum(r["score"] for r in judged) / 3
    empty = compute_score("x", "   ", "p1", {}, config=str(cfg))
    assert empty == {"score": pytest.approx(mean), "longreward_mask": 0.0,
                     "longreward_fallback": 1.0}
    other = compute_score("x", "Line 2.", "p2", {}, config=str(cfg))
    ghost = compute_score("x", "Line 2.", "ghost", {}, config=str(cfg))
    assert ghost["longreward_mask"] == 0.0
    assert ghost["score"] == pytest.approx((3 * mean + other["score"]) / 4)  # running mean


def test_verl_batch_signature_lists_in_list_out(judge_double, tmp_path):
    """verl's ``batch`` manager passes whole lists; the failed sample of a prompt gets the
    mean of the prompt's samples judged in the same call."""
    cfg = write_config(judge_double, tmp_path, fallback=None)
    out = load_like_verl().compute_score(
        data_sources=["lb"] * 5,
        solution_strs=["Line 1.", "Line 2.", "", "Line 4.", "Line 1."],
        ground_truths=["p1", "p1", "p1", "p1", "p2"],
        extra_infos=[{}, {}, {}, {"query": "Which line was approved on day 4?"}, None],
        config=str(cfg))
    assert isinstance(out, list) and len(out) == 5
    assert [r["longreward_mask"] for r in out] == [1.0, 1.0, 0.0, 1.0, 1.0]
    # items 0, 1 (and 3, with its own question) are prompt p1's group
    assert out[2]["score"] == pytest.approx((out[0]["score"] + out[1]["score"] +
                                             out[3]["score"]) / 3)
    assert extraction_calls(judge_double) == 3  # p1, p1 with another question, p2


def test_verl_float_function_pickles_by_reference(judge_double, tmp_path):
    """verl's ``prime`` manager runs the function in a process pool (pickled) and reads
    ``float(result)``: loaded by path as verl does, it still pickles by name."""
    import pickle

    cfg = write_config(judge_double, tmp_path)
    loaded = load_like_verl()
    for name in ("compute_score", "compute_score_async", "compute_score_float"):
        fn = getattr(loaded, name)
        assert pickle.loads(pickle.dumps(fn)) is getattr(verl_module, name)
    value = loaded.compute_score_float("lb", "Line 3 was approved.", "p1", {}, config=str(cfg))
    assert isinstance(value, float) and 0.0 <= value <= 10.0


def test_no_service_named_is_a_usage_error():
    with pytest.raises(UsageError, match="LONGREWARD_SERVE_CONFIG"):
        verl_module.compute_score("x", "Line 1.", "p1", {})


# --------------------------------------------------------------------------- TRL


def trl_loop() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """TRL runs async reward functions on an event loop in a daemon thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return loop, thread


def call_like_trl(fn: Any, **columns: Any) -> tuple[list[float | None], dict[str, Any]]:
    logged: dict[str, Any] = {}
    loop, thread = trl_loop()
    try:
        coro = fn(trainer_state=None, log_metric=lambda k, v: logged.__setitem__(k, v),
                  log_extra=lambda k, v: logged.__setitem__(k, v), **columns)
        out = asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=120)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
    return out, logged


@pytest.mark.parametrize("fallback", [None, -1.0])
def test_trl_reward_function(judge_double, tmp_path, fallback):
    cfg = write_config(judge_double, tmp_path, fallback=fallback)
    fn = longreward_reward(config=cfg)
    assert inspect.iscoroutinefunction(fn) and fn.__name__ == "longreward"
    prompts = [[{"role": "user", "content": "Read the ledger. What did the board approve?"}]] * 4
    completions = [[{"role": "assistant", "content": f"Line {k} was approved."}]
                   for k in range(4)]
    rewards, logged = call_like_trl(
        fn, prompts=prompts, completions=completions, completion_ids=[[1, 2]] * 4,
        prompt_id=["p1", "p1", "p1", "ghost"])
    assert len(rewards) == 4
    assert all(isinstance(r, float) and 0.0 <= r <= 10.0 for r in rewards[:3])
    assert rewards[3] == fallback  # None: TRL's "no reward"; or the configured fallback
    assert logged["longreward/masked"] == 0.25
    assert logged["longreward/fallback"] == (0.0 if fallback is None else 0.25)
    assert logged["longreward_reason"][:3] == ["", "", ""]
    assert "unknown prompt id 'ghost'" in logged["longreward_reason"][3]
    assert extraction_calls(judge_double) == 1


def test_trl_inline_columns_and_plain_text(judge_double, tmp_path):
    fn = longreward_reward(config=write_config(judge_double, tmp_path), name="lr")
    rewards, logged = call_like_trl(
        fn, prompts=["doc + question", "doc + question"], completions=["Line 2.", "Line 3."],
        context=[document("quay")] * 2, query=["What did the quay board approve?"] * 2)
    assert all(isinstance(r, float) for r in rewards) and logged["lr/masked"] == 0.0
    rewards, logged = call_like_trl(fn, prompts=["q"], completions=["Line 2."])
    assert rewards == [0.0] and "no 'prompt_id' column" in logged["lr_reason"][0]


def test_completion_text():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": [
        {"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]}]) == "a\nb"
    assert completion_text([{"role": "tool", "content": "x"},
                            {"role": "assistant", "content": "y"}]) == "y"


# --------------------------------------------------------------------------- remote


def test_adapters_on_a_running_server(judge_double, tmp_path):
    """Several trainer processes share one server (and its judge cache) through ``url``."""
    opts = options(judge_double, tmp_path, fallback_reward=0.0,
                   prompts=str(write_config(judge_double, tmp_path).parent / "prompts.jsonl"))
    with ServerThread(create_app(RewardService(opts))) as url:
        sync = verl_module.compute_score("x", "Line 1.", "p1", {}, url=url)
        asynchronous = asyncio.run(verl_module.compute_score_async("x", "Line 2.", "p1", {},
                                                                   url=url))
        ghost = verl_module.compute_score("x", "Line 1.", "ghost", {}, url=url)
        nolabel = verl_module.compute_score("x", "Line 1.", None, {}, url=url)
        rewards, _ = call_like_trl(longreward_reward(url=url), prompts=["q", "q"],
                                   completions=["Line 1.", "Line 2."], prompt_id=["p1", "p1"])
    assert sync["longreward_mask"] == asynchronous["longreward_mask"] == 1.0
    assert ghost == {"score": 0.0, "longreward_mask": 0.0, "longreward_fallback": 1.0}
    assert nolabel == ghost  # refused before sending; the fallback still applies
    assert rewards == pytest.approx([sync["score"], asynchronous["score"]])  # cached calls
    with pytest.raises(UsageError, match="no longreward server"):
        _backends.RemoteRewards("http://127.0.0.1:9")


def test_remote_adapters_fill_as_their_trainer_needs(judge_double, tmp_path):
    """Through a running server without a fallback: verl asks for numbers (``fill:
    neutral``), TRL keeps None; the native route keeps null unless asked."""
    opts = options(judge_double, tmp_path,
                   prompts=str(write_config(judge_double, tmp_path).parent / "prompts.jsonl"))
    with ServerThread(create_app(RewardService(opts))) as url:
        judged = [verl_module.compute_score("x", f"Line {k}.", "p1", {}, url=url)
                  for k in range(2)]
        ghost = verl_module.compute_score("x", "Line 1.", "ghost", {}, url=url)
        refused = verl_module.compute_score("x", "Line 1.", None, {}, url=url)
        batch = verl_module.compute_score(solution_strs=["Line 3.", "  "],
                                          ground_truths=["p1", "p1"], url=url)
        rewards, logged = call_like_trl(longreward_reward(url=url), prompts=["q", "q"],
                                        completions=["Line 1.", "Line 2."],
                                        prompt_id=["p1", "ghost"])
    mean = (judged[0]["score"] + judged[1]["score"]) / 2
    assert ghost == {"score": pytest.approx(mean), "longreward_mask": 0.0,
                     "longreward_fallback": 1.0}
    assert refused["longreward_mask"] == 0.0 and refused["score"] == pytest.approx(mean)
    assert [r["longreward_mask"] for r in batch] == [1.0, 0.0]
    assert batch[1]["score"] == pytest.approx((2 * mean + batch[0]["score"]) / 3)  # p1's group
    assert rewards[0] == pytest.approx(judged[1]["score"]) and rewards[1] is None
    assert "unknown prompt id 'ghost'" in logged["longreward_reason"][1]
