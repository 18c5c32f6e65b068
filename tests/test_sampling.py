"""Sampling: against the judge double (an OpenAI-compatible server that honours ``n``) and a
tiny random transformers model built here. N answers per prompt, resume, truncation,
duplicates and bad input rows."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from longreward.preference.sampling import (
    PolicyOptions,
    SampleOptions,
    truncate_middle,
)
from longreward.stages.sample import sample_file
from longreward.text.tokenizers import get_tokenizer

DOC = "The lighthouse keeper wrote in his log every night. " * 30


def write_prompts(path: Path, rows: list[Any]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def endpoint_options(double: Any, **kw: Any) -> SampleOptions:
    policy_kw = {"model": "policy-x", "max_retries": 2, **kw.pop("policy", {})}
    policy = PolicyOptions(provider="openai_compatible", base_urls=[double.base_url], **policy_kw)
    return SampleOptions(policy=policy, **kw)


def run(prompts: Path, out: Path, options: SampleOptions, **kw: Any):
    return asyncio.run(sample_file(prompts, out, options, run_dir=out.parent / "run", **kw))


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    return write_prompts(tmp_path / "prompts.jsonl", [
        {"id": "p1", "context": DOC, "query": "What did the keeper write?"},
        {"id": "p2", "context": "Short document about owls.", "query": "What is it about?"},
        '{"id": "p3", "context": ',  # torn line
        {"id": "p4", "query": "no context"},
        # an identical repeat: the first row is used, the repeat is reported (a repeat with
        # another document rejects both rows: tests/test_stage_runner.py)
        {"id": "p1", "context": DOC, "query": "What did the keeper write?"},
    ])


def test_n_answers_in_one_request_each(judge_double: Any, prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "cands.jsonl"
    opts = endpoint_options(judge_double, n=10, seed=7, top_p=0.9, max_new_tokens=64)
    s = run(prompts, out, opts)
    rows = read_jsonl(out)
    assert len(rows) == 20 and s.candidates == 20
    assert {r["prompt_id"] for r in rows} == {"p1", "p2"}
    assert sorted(r["id"] for r in rows if r["prompt_id"] == "p1") == sorted(f"p1-{k}" for k in range(10))
    # the shape `longreward score` reads, flat
    r0 = next(r for r in rows if r["id"] == "p1-0")
    assert r0["context"] == DOC and r0["query"] == "What did the keeper write?"
    assert r0["policy"]["model"] == "policy-x" and r0["policy"]["temperature"] == 1.0
    assert r0["truncated"] is None and r0["duplicate_of"] is None and r0["sample_index"] == 0
    # one request per prompt, carrying n, temperature, top_p, seed, max_tokens
    reqs = judge_double.requests
    assert len(reqs) == 2
    body = reqs[0]["body"]
    assert (body["n"], body["temperature"], body["top_p"], body["seed"], body["max_tokens"]) == (10, 1.0, 0.9, 7, 64)
    assert body["messages"][-1]["content"].endswith("What did the keeper write?") or \
        body["messages"][-1]["content"].endswith("What is it about?")
    # bad rows reported by record and skipped; nothing else lost
    assert len(s.errors) == 3
    assert any("prompts.jsonl:3" in str(e) for e in s.errors)
    assert any(e.field == "context" for e in s.errors)
    assert len(read_jsonl(tmp_path / "cands.jsonl.rejected.jsonl")) == 3

    # rerun: nothing to do, no request
    again = run(prompts, out, opts)
    assert again.already_done == 2 and again.requests == 0 and len(judge_double.requests) == 2
    assert len(read_jsonl(out)) == 20


def test_server_that_ignores_n_gets_further_requests(prompts: Path, tmp_path: Path) -> None:
    from longreward.judge import ModelAPI, ModelClient, ModelOutput

    class OneAtATime(ModelAPI):
        provider = "one"

        def __init__(self) -> None:
            super().__init__("m")
            self.calls: list[Any] = []

        async def generate(self, messages, config, json_schema=None):  # noqa: ANN001
            self.calls.append(config)
            return ModelOutput(texts=[f"answer seed={config.seed}"])

    api = OneAtATime()
    out = tmp_path / "c.jsonl"
    s = run(prompts, out, SampleOptions(n=4, seed=100), client=ModelClient(api))
    assert s.candidates == 8 and len(api.calls) == 8
    # each request of a prompt has its own seed, so the answers differ
    assert sorted({c.seed for c in api.calls}) == [100, 101, 102, 103]
    assert s.duplicates == 0


def test_one_request_per_answer_and_resume_after_a_failure(judge_double: Any, prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "cands.jsonl"
    opts = endpoint_options(judge_double, n=6, n_per_request=2, seed=0, prompt_concurrency=1,
                            policy={"max_concurrency": 1})
    served = {"n": 0}

    def responder(body: dict) -> None:
        served["n"] += 1
        if served["n"] == 4:  # after this reply every request fails permanently
            judge_double.fail_with = (400, "model is being reloaded")
        return None

    judge_double.responder = responder
    s = run(prompts, out, opts)
    assert s.failed and s.candidates == 6  # one prompt done (3 requests), one half done
    first = [json.dumps(r["body"], sort_keys=True) for r in judge_double.requests]
    assert all(r["body"]["n"] == 2 for r in judge_double.requests)

    judge_double.fail_with = None
    s2 = run(prompts, out, opts)
    assert not s2.failed and s2.candidates == 6
    rows = read_jsonl(out)
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    # replay: the half-done prompt's completed request came from the cache, not the server
    succeeded_before = set(first[:4])
    later = [json.dumps(r["body"], sort_keys=True) for r in judge_double.requests[len(first):]]
    assert not succeeded_before & set(later)
    assert s2.cache_hits == 1 and s2.requests == 2


def test_duplicates_are_marked_and_counted(judge_double: Any, prompts: Path, tmp_path: Path) -> None:
    judge_double.responder = lambda body: ["same answer", "other answer", "same answer"]
    s = run(prompts, tmp_path / "c.jsonl", endpoint_options(judge_double, n=3))
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "c.jsonl")}
    assert rows["p1-2"]["duplicate_of"] == "p1-0" and rows["p1-1"]["duplicate_of"] is None
    assert s.duplicates == 2


def test_completion_style_hits_the_completions_endpoint(judge_double: Any, prompts: Path, tmp_path: Path) -> None:
    opts = endpoint_options(judge_double, n=2, policy={"style": "completion"},
                            system_prompt="Answer briefly.")
    run(prompts, tmp_path / "c.jsonl", opts)
    reqs = judge_double.requests
    assert {r["path"] for r in reqs} == {"/v1/completions"}
    # no tokenizer given: the layout itself is the prompt
    assert any(r["body"]["prompt"].startswith("Answer briefly.\n\nShort document about owls.") for r in reqs)


def test_truncation_in_the_middle_with_an_approximate_count(judge_double: Any, prompts: Path, tmp_path: Path) -> None:
    opts = endpoint_options(judge_double, n=2, max_context_tokens=300, max_new_tokens=100)
    s = run(prompts, tmp_path / "c.jsonl", opts)
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "c.jsonl")}
    t = rows["p1-0"]["truncated"]
    assert t["approximate"] is True and t["tokenizer"] == "regex"
    assert t["kept_tokens"] <= t["limit_tokens"] < t["original_tokens"]
    assert rows["p2-0"]["truncated"] is None and s.truncated == 1
    sent = next(r["body"]["messages"][-1]["content"] for r in judge_double.requests
                if "keeper" in r["body"]["messages"][-1]["content"])
    assert sent.startswith("The lighthouse keeper") and "\n...\n" in sent
    assert rows["p1-0"]["context"] == DOC  # the row keeps the full document for the judge


def test_truncate_middle_keeps_head_and_tail() -> None:
    tok = get_tokenizer(None)
    text = " ".join(f"w{i}" for i in range(100))
    cut, info = truncate_middle(text, 10, tok)
    assert cut.startswith("w0") and cut.endswith("w99") and "w50" not in cut
    assert info is not None and info.kept_tokens == 10
    same, none = truncate_middle("short text", 10, tok)
    assert same == "short text" and none is None


def test_resume_with_other_settings_is_refused_not_mixed(judge_double: Any, prompts: Path, tmp_path: Path) -> None:
    from longreward.store import StaleRunError

    out = tmp_path / "c.jsonl"
    run(prompts, out, endpoint_options(judge_double, n=3, seed=1))
    calls = judge_double.count()
    # Fewer answers, another temperature or another policy model: the 3 stored answers per
    # prompt were made otherwise, and must not be passed off as this run's.
    for change in ({"n": 2, "seed": 1}, {"n": 3, "seed": 1, "temperature": 0.5},
                   {"n": 3, "seed": 1, "policy": {"model": "other"}}):
        with pytest.raises(StaleRunError, match="new run directory"):
            run(prompts, out, endpoint_options(judge_double, **change))
    assert judge_double.count() == calls and len(read_jsonl(out)) == 6
    # Where the requests go and how fast is not a change of settings.
    again = run(prompts, out, endpoint_options(judge_double, n=3, seed=1, prompt_concurrency=2,
                                               policy={"max_concurrency": 3, "timeout": 9}))
    assert again.already_done == 2 and judge_double.count() == calls


def test_sample_cli_reports_a_stale_run_dir(prompts: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from longreward.cli import app

    out = tmp_path / "c.jsonl"
    args = ["sample", str(prompts), "-o", str(out), "--dry-run", "--no-progress"]
    assert CliRunner().invoke(app, [*args, "-n", "2"]).exit_code == 1  # bad rows in the fixture
    res = CliRunner().invoke(app, [*args, "-n", "3"])
    assert res.exit_code == 2 and "n: 2 -> 3" in " ".join(res.output.split())


# --------------------------------------------------------------------------- transformers


def build_tiny_model(path: Path) -> Path:
    """A random 1-layer Llama and a word-level tokenizer with a chat template, built in
    memory: no download."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["the", "a", "keeper", "lighthouse", "wrote", "log", "every", "night", "what", "did", "write", "in", "his", "owls", "about", "is", "it"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<unk>", "<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
    tok.train_from_iterator([" ".join(words)] * 3, trainers.WordLevelTrainer(special_tokens=specials))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>")
    fast.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                          "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                      pad_token_id=fast.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-policy"))


def test_transformers_policy_n_candidates_truncated_by_its_tokenizer_and_resumable(
    tiny_model: Path, prompts: Path, tmp_path: Path
) -> None:
    from longreward.judge import ModelClient
    from longreward.preference.sampling import build_policy_client

    opts = SampleOptions(
        policy=PolicyOptions(provider="transformers", model=str(tiny_model),
                             provider_options={"device": "cpu"}),
        n=3, max_new_tokens=8, seed=1,
    )
    out = tmp_path / "c.jsonl"
    client = build_policy_client(opts.policy)
    s = run(prompts, out, opts, client=client)
    rows = read_jsonl(out)
    assert s.candidates == 6 and s.requests == 2  # n=3 in one generate() per prompt
    assert sorted(r["id"] for r in rows) == ["p1-0", "p1-1", "p1-2", "p2-0", "p2-1", "p2-2"]
    # the window (256) comes from the model config; the count from the policy's own tokenizer
    assert s.window == 256
    t = next(r for r in rows if r["id"] == "p1-0")["truncated"]
    assert t is not None and t["approximate"] is False and t["tokenizer"] == str(tiny_model)

    fresh = build_policy_client(opts.policy)
    assert isinstance(fresh, ModelClient)
    again = run(prompts, out, opts, client=fresh)
    assert again.already_done == 2 and again.requests == 0 and fresh.snapshot()["requests"] == 0


def test_transformers_completion_style_applies_the_chat_template(tiny_model: Path, prompts: Path, tmp_path: Path) -> None:
    opts = SampleOptions(
        policy=PolicyOptions(provider="transformers", model=str(tiny_model), style="completion",
                             provider_options={"device": "cpu"}),
        n=2, max_new_tokens=4, seed=3,
    )
    s = run(prompts, tmp_path / "c.jsonl", opts)
    assert s.candidates == 4 and not s.failed


def test_vllm_max_model_len_caps_the_truncation_window(tiny_model: Path) -> None:
    from longreward.preference.sampling import make_renderer

    def window(**provider_options: Any) -> int | None:
        opts = SampleOptions(policy=PolicyOptions(provider="vllm", model=str(tiny_model),
                                                  provider_options=provider_options))
        return make_renderer(opts).window

    assert window() == 256  # the model config's max_position_embeddings
    # vLLM refuses prompts beyond max_model_len, so the document must be cut to fit it.
    assert window(max_model_len=128) == 128
    assert window(engine_args={"max_model_len": 200}) == 200


def test_vllm_provider_without_vllm_says_how_to_install() -> None:
    pytest.importorskip("transformers")
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vllm is installed")
    from longreward.errors import MissingDependencyError
    from longreward.judge import create_apis

    with pytest.raises(MissingDependencyError, match=r"longreward\[vllm\]"):
        create_apis("vllm", "some/model")


def test_vllm_provider_maps_sampling_params_and_n(monkeypatch: pytest.MonkeyPatch, prompts: Path, tmp_path: Path) -> None:
    """The in-process vLLM provider, against a stand-in ``vllm`` module (vLLM needs a GPU)."""
    import types

    seen: list[Any] = []

    class SamplingParams:
        def __init__(self, **kw: Any) -> None:
            self.kw = kw

    class LLM:
        def __init__(self, model: str, **engine: Any) -> None:
            self.engine = engine

        def _result(self, params: SamplingParams) -> Any:
            outs = [types.SimpleNamespace(index=i, text=f"answer {i} seed {params.kw.get('seed')}",
                                          token_ids=[1, 2], finish_reason="stop")
                    for i in range(params.kw["n"])]
            return [types.SimpleNamespace(outputs=outs, prompt_token_ids=[1] * 9, num_cached_tokens=0)]

        def chat(self, convo: Any, params: SamplingParams, use_tqdm: bool = False) -> Any:
            seen.append(("chat", convo, params.kw))
            return self._result(params)

        def generate(self, prompts: Any, params: SamplingParams, use_tqdm: bool = False) -> Any:
            seen.append(("generate", prompts, params.kw))
            return self._result(params)

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = LLM, SamplingParams  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "vllm", fake)
    from longreward.judge import ModelClient
    from longreward.judge.providers.vllm_local import VLLMAPI

    opts = SampleOptions(n=4, seed=5, top_p=0.95, max_new_tokens=32)
    s = run(prompts, tmp_path / "c.jsonl", opts, client=ModelClient(VLLMAPI("some/model")))
    assert s.candidates == 8 and len(seen) == 2
    kind, convo, kw = seen[0]
    assert kind == "chat" and convo[-1]["role"] == "user"
    assert kw == {"n": 4, "temperature": 1.0, "max_tokens": 32, "top_p": 0.95, "seed": 5}


def test_an_edited_prompt_is_sampled_again_not_kept_stale(tmp_path):
    """Answers belong to the prompt they were sampled from: after the question or document of
    a prompt is edited, a rerun drops its old answers and samples new ones; other prompts are
    untouched and no id is duplicated."""
    import asyncio
    import json

    from longreward.preference.sampling import PolicyOptions, SampleOptions
    from longreward.stages.sample import sample_file

    prompts = tmp_path / "prompts.jsonl"
    rows = [{"id": f"p{i}", "context": f"Document {i}. It has facts about topic {i}.",
             "query": f"What about topic {i}?"} for i in range(3)]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = SampleOptions(policy=PolicyOptions(provider="dry_run"), n=3)
    out = tmp_path / "cands.jsonl"
    asyncio.run(sample_file(prompts, out, options))
    first = {json.loads(x)["id"]: json.loads(x) for x in out.read_text().splitlines()}

    rows[1]["query"] = "A different question about topic 1?"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = asyncio.run(sample_file(prompts, out, options))
    assert summary.changed == 1 and summary.candidates == 3
    after = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["id"] for x in after) == sorted(first)
    by_id = {x["id"]: x for x in after}
    assert all(by_id[f"p1-{k}"]["query"] == rows[1]["query"] for k in range(3))
    assert all(by_id[f"p{i}-{k}"] == first[f"p{i}-{k}"] for i in (0, 2) for k in range(3))


@pytest.mark.parametrize("alias", ["llama_cpp", "llama-cpp", "LLAMA-CPP"])
def test_an_alias_of_a_local_provider_budgets_for_its_window(tmp_path, alias):
    """``llama-cpp`` is the llama_cpp provider in every respect: the prompts are fitted to the
    engine's default n_ctx, not sent whole as to a remote endpoint (which 0.2 did)."""
    from longreward.preference.sampling import SampleOptions, make_renderer

    options = SampleOptions.model_validate({"policy": {
        "provider": alias, "model": str(tmp_path / "absent.gguf")}, "max_new_tokens": 64})
    assert options.policy.provider == "llama_cpp"
    renderer = make_renderer(options)
    assert renderer.window == 4096  # llama.cpp's default n_ctx: exact, no config read
    _msgs, _context, cut = renderer.render("harbour levy " * 4000, "What was approved?")
    assert cut is not None


def test_a_gguf_whose_tokenizer_cannot_be_read_falls_back_to_the_approximate_count(
        tmp_path, caplog):
    """transformers cannot read every GGUF (an architecture it lacks, a damaged file): the
    llama_cpp policy then still fits prompts to n_ctx, with the approximate count and a
    warning, instead of failing every prompt."""
    import logging

    from longreward.preference.sampling import SampleOptions, make_renderer

    pytest.importorskip("transformers")
    fake = tmp_path / "unknown-arch.gguf"
    fake.write_bytes(b"GGUF" + b"\x00" * 64)
    options = SampleOptions.model_validate({"policy": {
        "provider": "llama_cpp", "model": str(fake), "provider_options": {"n_ctx": 1024}},
        "max_new_tokens": 64})
    with caplog.at_level(logging.WARNING, logger="longreward"):
        renderer = make_renderer(options)
    assert renderer.approximate and renderer.window == 1024
    assert any("counting tokens approximately" in r.getMessage() for r in caplog.records)
    _msgs, context, cut = renderer.render("harbour levy " * 2000, "What was approved?")
    assert cut is not None and cut.approximate and len(context) < len("harbour levy " * 2000)
