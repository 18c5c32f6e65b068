"""Providers (dry-run, transformers, OpenAI error mapping) and the registry."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from pydantic import BaseModel, Field

import longreward.judge
from longreward.errors import MissingDependencyError
from longreward.judge import (
    DRY_RUN_BANNER,
    DryRunAPI,
    GenerateConfig,
    Message,
    ModelClient,
    OpenAICompatibleAPI,
    ReplyParseError,
    SchemaUnsupportedError,
    TransformersAPI,
    UnknownProviderError,
    create_apis,
    provider_names,
    provider_spec,
    register_provider,
)
from longreward.judge._registry import _PROVIDERS
from longreward.judge._schema_instance import schema_instance
from longreward.judge.providers.openai_compatible import parse_retry_after

from judge_double import JudgeDouble


class Statement(BaseModel):
    text: str = Field(min_length=3)
    verdict: Literal["supported", "partially", "unsupported"]
    confidence: float = Field(ge=0.0, le=1.0)


class Review(BaseModel):
    analysis: str
    statements: list[Statement] = Field(min_length=1, max_length=5)
    score: int = Field(ge=1, le=10)
    note: str | None = None
    tags: dict[str, int] = Field(default_factory=dict)
    flag: bool = False


class Node(BaseModel):
    name: str
    children: list[Node] = Field(default_factory=list)


MESSAGES = [
    Message(role="system", content="You are a judge. Reply in JSON."),
    Message(
        role="user",
        content="Document: Rivers flow to the sea. Answer: The Nile is long. It flows north. "
        "Egypt depends on it.",
    ),
]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---------------------------------------------------------------------- dry run


def test_dry_run_is_deterministic_and_schema_valid() -> None:
    api = DryRunAPI()
    schema = Review.model_json_schema()
    first = run(api.generate(MESSAGES, GenerateConfig(), schema))
    again = run(DryRunAPI().generate(MESSAGES, GenerateConfig(), schema))
    assert first.texts == again.texts
    review = Review.model_validate_json(first.text)
    answer_sentences = {"The Nile is long.", "It flows north.", "Egypt depends on it."}
    assert any(s.text in answer_sentences for s in review.statements) or review.analysis
    other = run(
        api.generate(
            [*MESSAGES[:1], Message(role="user", content="Other. Text here.")],
            GenerateConfig(),
            schema,
        )
    )
    assert other.text != first.text
    assert "not judgments" in DRY_RUN_BANNER


def test_dry_run_statements_come_from_the_last_user_message() -> None:
    class Statements(BaseModel):
        statements: list[str]

    out = run(DryRunAPI().generate(MESSAGES, GenerateConfig(), Statements.model_json_schema()))
    statements = Statements.model_validate_json(out.text).statements
    assert 1 <= len(statements) <= 3
    assert all(s in MESSAGES[1].content for s in statements)


def test_dry_run_sampling_gives_n_distinct_texts() -> None:
    api = DryRunAPI()
    out = run(api.generate(MESSAGES, GenerateConfig(n=4, temperature=1.0)))
    assert len(out.texts) == 4 and len(set(out.texts)) == 4
    assert out.texts == run(api.generate(MESSAGES, GenerateConfig(n=4, temperature=1.0))).texts
    completed = run(api.complete_text("A short prompt. With two sentences.", GenerateConfig(n=2)))
    assert len(set(completed.texts)) == 2 and completed.usage.prompt_tokens > 0


def test_dry_run_through_the_client() -> None:
    async def go() -> None:
        async with ModelClient(DryRunAPI()) as client:
            asked = await client.ask(
                lambda mode: MESSAGES, Review, Review.model_validate_json, tag="dry"
            )
            assert asked.ok and asked.mode == "json"

    run(go())


@pytest.mark.parametrize("model", [Review, Statement, Node])
def test_schema_instances_validate(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    for seed in range(25):
        value = schema_instance(schema, random.Random(seed), ["One sentence here.", "Another."])
        model.model_validate(value)
        json.dumps(value)


# ---------------------------------------------------------------------- registry


def test_registry_builds_providers_by_name() -> None:
    (dry,) = create_apis("dry-run", "dry")
    assert isinstance(dry, DryRunAPI)
    apis = create_apis("openai", "m", base_urls=["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"])
    assert [a.base_url for a in apis] == ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"]  # type: ignore[attr-defined]
    assert all(isinstance(a, OpenAICompatibleAPI) for a in apis)
    assert apis[0].cache_identity() == {"provider": "openai_compatible", "model": "m"}
    (local,) = create_apis("transformers", "some/model", device="cpu")
    assert isinstance(local, TransformersAPI)  # nothing loaded until the first call


def test_registry_errors_say_the_fix() -> None:
    with pytest.raises(UnknownProviderError, match="openai_compatible"):
        create_apis("gpt", "m")
    with pytest.raises(ValueError, match="only apply"):
        create_apis("dry_run", "m", base_urls=["http://127.0.0.1:1/v1"])
    register_provider(
        "needs_missing", "json:dumps", requires=(("surely_not_installed_pkg", "local"),)
    )
    try:
        with pytest.raises(MissingDependencyError, match=r"pip install 'longreward\[local\]'"):
            create_apis("needs_missing", "m")
    finally:
        _PROVIDERS.pop("needs_missing")


def test_a_provider_is_one_name_after_validation() -> None:
    """Every alias (any case) validates to the registered name, so nothing downstream sees
    ``llama-cpp`` and ``llama_cpp`` as two providers; an unknown name fails at validation."""
    from pydantic import ValidationError

    from longreward.config import EndpointOptions
    from longreward.preference.sampling import PolicyOptions

    for name in provider_names():
        spec = provider_spec(name)
        assert spec.name == name
        for alias in (name, name.upper(), *spec.aliases, *(f" {a.upper()} " for a in spec.aliases)):
            assert EndpointOptions(provider=alias).provider == name
            assert PolicyOptions(provider=alias).identity()["provider"] == name
            assert provider_spec(alias) is spec
    assert provider_spec("llama-cpp").local and provider_spec("hf").local
    assert provider_spec("openai").remote and provider_spec("dryrun").placeholder
    with pytest.raises(ValidationError, match="unknown judge provider 'gtp'.*openai_compatible"):
        EndpointOptions(provider="gtp")


def test_engine_windows_come_from_the_registry() -> None:
    llama, vllm, hf = (provider_spec(n) for n in ("llama_cpp", "vllm", "transformers"))
    assert llama.engine_window({}) == 4096 and llama.window_is_exact  # llama.cpp's n_ctx default
    assert llama.engine_window({"n_ctx": 8192}) == 8192
    assert llama.engine_window({"n_ctx": 0}) is None  # 0: the model's own window
    assert vllm.engine_window({}) is None and not vllm.window_is_exact
    assert vllm.engine_window({"engine_args": {"max_model_len": 200}}) == 200
    assert vllm.engine_window({"max_model_len": 128, "engine_args": {"max_model_len": 200}}) == 128
    assert hf.engine_window({"device": "cpu"}) is None


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_without_vllm_says_the_fix() -> None:
    with pytest.raises(MissingDependencyError, match=r"longreward\[vllm\]"):
        create_apis("vllm", "m")


def test_importing_the_judge_does_not_import_torch() -> None:
    src = Path(longreward.judge.__file__).resolve().parents[2]
    code = "import sys, longreward.judge; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------- openai error details


def test_retry_after_parsing() -> None:
    assert parse_retry_after(httpx.Headers({"retry-after": "2.5"})) == 2.5
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "150"})) == pytest.approx(0.15)
    dated = parse_retry_after(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert dated == 0.0  # a date in the past: go now
    assert parse_retry_after(httpx.Headers({})) is None
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"})) is None


def test_api_key_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    from longreward.judge.providers.openai_compatible import resolve_api_key

    monkeypatch.delenv("LONGREWARD_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert resolve_api_key(None) == "EMPTY"
    monkeypatch.setenv("OPENAI_API_KEY", "from-openai")
    assert resolve_api_key(None) == "from-openai"
    monkeypatch.setenv("LONGREWARD_API_KEY", "from-longreward")
    assert resolve_api_key(None) == "from-longreward"
    assert resolve_api_key("given") == "given"


# ---------------------------------------------------------------------- transformers


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init 2-layer Llama and a word-level tokenizer with a chat template, built
    locally: no downloads."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    specials = ["[UNK]", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]
    words = [
        "the",
        "cat",
        "sat",
        "on",
        "mat",
        "a",
        "dog",
        "ran",
        "score",
        "is",
        "good",
        "bad",
        "answer",
        "question",
        "document",
        "judge",
        "yes",
        "no",
        "it",
        "was",
        "warm",
        "cold",
        "[",
        "]",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "9",
        "10",
        ".",
        ",",
        "?",
    ]
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    core = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    core.decoder = tokenizers.decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=specials[4:],
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    config = transformers.LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_transformers_provider_generates(tiny_model_dir: Path) -> None:
    api = TransformersAPI(str(tiny_model_dir), device="cpu", dtype="float32")
    chat = [
        Message(role="system", content="you judge"),
        Message(role="user", content="the cat sat ?"),
    ]

    async def go() -> None:
        greedy = await api.generate(chat, GenerateConfig(max_tokens=6, n=2))
        assert len(greedy.texts) == 2 and greedy.texts[0] == greedy.texts[1]
        assert greedy.usage.prompt_tokens > 0 and greedy.usage.completion_tokens <= 6
        again = await api.generate(chat, GenerateConfig(max_tokens=6))
        assert again.texts[0] == greedy.texts[0]  # greedy is deterministic
        sampled = await api.generate(
            chat, GenerateConfig(max_tokens=6, n=3, temperature=1.0, seed=1)
        )
        assert len(sampled.texts) == 3
        completed = await api.complete_text("the dog ran", GenerateConfig(max_tokens=4))
        assert len(completed.texts) == 1
        with pytest.raises(SchemaUnsupportedError):
            await api.generate(chat, GenerateConfig(), {"type": "object"})

        class Score(BaseModel):
            score: int

        def parse(text: str) -> Score:
            raise ReplyParseError("a random model gives no score")

        async with ModelClient(api) as client:  # the schema refusal moves the client to text
            asked = await client.ask(
                lambda mode: chat,
                Score,
                parse,
                tag="local",
                attempts=2,
                config=GenerateConfig(max_tokens=4),
            )
            assert asked.mode == "text" and asked.value is None and len(asked.raw) == 2

    run(go())


# ------------------------------------------------------------- the server's own sampling


def _sent(double: JudgeDouble, **api_options: Any) -> list[dict[str, Any]]:
    api = OpenAICompatibleAPI("judge-double", base_url=double.base_url, api_key="k",
                              **api_options)

    async def go() -> None:
        for _ in range(2):
            await api.generate([Message(role="user", content="Score it.")],
                               GenerateConfig(temperature=0.0, max_tokens=16),
                               response_format="text")
        await api.aclose()

    asyncio.run(go())
    return [r["body"] for r in double.requests]


def test_llama_cpp_pythons_server_is_told_not_to_penalise_repeats(judge_double):
    """llama-cpp-python's server applies repeat_penalty 1.1 unless told otherwise, so a judge
    at temperature 0 writes a verdict pushed away from numbers it just wrote; its requests
    carry repeat_penalty 1.0 (found from its model listing: owned_by "me")."""
    judge_double.like_llama_cpp()
    assert [b.get("repeat_penalty") for b in _sent(judge_double)] == [1.0, 1.0]


def test_other_servers_get_no_extra_sampling_field_and_extra_body_wins(judge_double):
    assert all("repeat_penalty" not in b for b in _sent(judge_double))  # e.g. OpenAI's API
    judge_double.reset()
    judge_double.like_llama_cpp()
    sent = _sent(judge_double, extra_body={"repeat_penalty": 1.3})
    assert [b["repeat_penalty"] for b in sent] == [1.3, 1.3]
