"""The structured-output ladder: json_schema → json_object with schema (llama.cpp) →
json_object → tagged text, found per endpoint, recorded in the run store, reused on resume."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from longreward.errors import UsageError
from longreward.judge import (
    DryRunAPI,
    GenerateConfig,
    Message,
    ModelClient,
    OpenAICompatibleAPI,
    ReplyMode,
    ReplyParseError,
    RetryableError,
    SchemaUnsupportedError,
)
from longreward.judge._cache import canonical
from longreward.judge._ladder import meta_key
from longreward.judge.providers.openai_compatible import classify_error
from longreward.store import RunStore

from judge_double import LLAMA_CPP_REFUSAL, JudgeDouble

MODEL = "judge-double"


class Verdict(BaseModel):
    analysis: str
    score: int = Field(ge=0, le=10)


def parse_text(text: str) -> Verdict:
    if "[[" not in text:
        raise ReplyParseError("no [[score]]")
    return Verdict(analysis=text, score=5)


def build(mode: ReplyMode, question: str = "q") -> list[Message]:
    ending = "Reply in JSON." if mode == "json" else "End with [[score]]."
    return [Message(role="system", content=f"You judge answers. {ending}"),
            Message(role="user", content=f"Question {question}: is the sky blue? Answer: yes.")]


def client_for(double: JudgeDouble, **options: Any) -> ModelClient:
    options.setdefault("backoff_base", 0.01)
    options.setdefault("timeout", 5.0)
    return ModelClient(OpenAICompatibleAPI(MODEL, base_url=double.base_url), **options)


async def ask(client: ModelClient, question: str = "q") -> Any:
    return await client.ask(lambda mode: build(mode, question), Verdict, parse_text, tag="t")


def formats(requests: Any) -> list[Any]:
    out = []
    for r in requests:
        fmt = r["body"].get("response_format")
        out.append(None if fmt is None else
                   ("json_object_schema" if fmt["type"] == "json_object" and "schema" in fmt
                    else fmt["type"]))
    return out


# ---------------------------------------------------------------------- llama.cpp


def test_llama_cpp_server_gets_json_object_with_schema_and_no_retry_loop(
        judge_double: JudgeDouble, tmp_path: Path) -> None:
    """Before: a json_schema request got HTTP 500 from llama.cpp, was retried 7 times per ask,
    and nothing was scored. Now one probe finds the json_object+schema rung; every ask is one
    request, in that format, with the JSON prompt, and the mode is kept in the run store."""
    judge_double.like_llama_cpp()

    async def go(store: RunStore) -> list[Any]:
        async with client_for(judge_double, cache=store) as client:
            results = await asyncio.gather(*(ask(client, f"q{i}") for i in range(6)))
            assert client.structured_mode == "json_object_schema"
            assert client.reply_mode == "json"
            assert client.stats.total.retries == 0 and client.stats.total.failures == 0
            return list(results)

    with RunStore(tmp_path) as store:
        results = asyncio.run(go(store))
        assert all(a.ok and a.mode == "json" for a in results)
        assert formats(judge_double.probes) == ["json_schema", "json_object_schema"]
        assert formats(judge_double.requests) == ["json_object_schema"] * 6
        assert all("Reply in JSON" in r["body"]["messages"][0]["content"]
                   for r in judge_double.requests)
        api = OpenAICompatibleAPI(MODEL, base_url=judge_double.base_url)
        recorded = store.get_meta(meta_key(api))
        assert recorded["mode"] == "json_object_schema" and recorded["model"] == MODEL
        assert judge_double.base_url not in json.dumps(recorded)  # a hash of it, not the URL

    # resume: the recorded mode is used at once, with no probe
    with RunStore(tmp_path) as store:
        async def again() -> None:
            async with client_for(judge_double, cache=store) as client:
                assert (await ask(client, "new question")).ok

        asyncio.run(again())
    assert len(judge_double.probes) == 2
    assert formats(judge_double.requests)[-1] == "json_object_schema"


def test_plain_json_object_rung_uses_the_json_prompt(judge_double: JudgeDouble) -> None:
    judge_double.formats = {"json_object"}
    judge_double.format_refusal = (422, "Unprocessable: response_format.json_schema not allowed")
    judge_double.responder = lambda body: json.dumps({"analysis": "fine", "score": 6})

    async def go() -> None:
        async with client_for(judge_double) as client:
            asked = await ask(client)
            assert asked.ok and asked.value.score == 6 and asked.mode == "json"
            assert client.structured_mode == "json_object"

    asyncio.run(go())
    assert formats(judge_double.probes) == ["json_schema", "json_object_schema", "json_object"]
    assert judge_double.requests[0]["body"]["response_format"] == {"type": "json_object"}


def test_a_refusal_on_a_real_request_steps_down_when_the_probe_got_no_answer(
        judge_double: JudgeDouble) -> None:
    """A probe that times out decides nothing; the asks go on at the top rung, and a refusal
    there still moves the client down the ladder, without costing an attempt."""
    judge_double.like_llama_cpp()
    judge_double.probe_delay = 2.0  # a busy server: the probe times out

    async def go() -> None:
        async with client_for(judge_double, probe_timeout=0.2) as client:
            results = await asyncio.gather(*(ask(client, f"q{i}") for i in range(4)))
            assert all(a.ok and a.attempts == 1 for a in results)
            assert client.structured_mode == "json_object_schema"
            # one probe for all four asks, and no retry loop on the refusals
            assert client.stats.tag("probe").requests == 1
            assert client.stats.total.retries == 0

    asyncio.run(go())
    assert formats(judge_double.probes) == ["json_schema"]
    sent = formats(judge_double.requests)
    assert sent.count("json_object_schema") == 4 and "json_schema" in sent


def test_a_refusal_seen_by_a_probe_that_is_cut_short_still_counts(
        judge_double: JudgeDouble) -> None:
    judge_double.like_llama_cpp()
    judge_double.delay = 2.0  # the refusal is answered at once, the next rung times out

    async def go() -> None:
        async with client_for(judge_double, probe_timeout=0.2) as client:
            assert await client.detect_structured_output() == "json_object_schema"
            assert client.structured_mode == "json_object_schema"

    asyncio.run(go())
    assert formats(judge_double.probes) == ["json_schema", "json_object_schema"]
    assert not judge_double.requests


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_connection_failure_is_an_outage_not_a_schema_answer(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"

    async def go(store: RunStore) -> None:
        api = OpenAICompatibleAPI(MODEL, base_url=url)
        async with ModelClient(api, cache=store, max_retries=1, backoff_base=0.01,
                               timeout=2.0) as client:
            results = await asyncio.gather(*(ask(client, f"q{i}") for i in range(3)))
            assert client.stats.tag("probe").requests == 1  # one probe, shared, not retried
            assert all(not a.ok and "EndpointUnreachableError" in a.error for a in results)
            assert client.structured_mode is None  # still unknown: no rung was refused
            assert client.reply_mode == "json"

    with RunStore(tmp_path) as store:
        asyncio.run(go(store))
        assert store.get_meta(meta_key(OpenAICompatibleAPI(MODEL, base_url=url))) is None


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize("status", [400, 422, 500])
def test_a_refusal_is_recognised_from_the_body_whatever_the_status(status: int) -> None:
    body = json.dumps({"error": {"message": "response_format json_schema is not supported"}})
    assert isinstance(classify_error(status, body, structured=True), SchemaUnsupportedError)
    # the same words for a request that carried no response_format mean nothing special
    plain = classify_error(status, body, structured=False)
    assert not isinstance(plain, SchemaUnsupportedError)
    assert isinstance(plain, RetryableError) == (status >= 500)


def test_llama_cpp_refusal_body_and_non_refusals() -> None:
    status, message = LLAMA_CPP_REFUSAL
    body = json.dumps({"error": {"message": message, "type": "internal_server_error"}})
    assert isinstance(classify_error(status, body, structured=True), SchemaUnsupportedError)
    # statuses that mean something else whatever the body says
    for other in (401, 404, 429):
        assert not isinstance(classify_error(other, body, structured=True),
                              SchemaUnsupportedError)
    # a context error that also names the format is a context error
    ctx = json.dumps({"error": {"message": "maximum context length is 8192 tokens; "
                                           "response_format ignored"}})
    assert type(classify_error(400, ctx, structured=True)).__name__ == "ContextTooLongError"


def test_forced_modes_and_their_limits(judge_double: JudgeDouble) -> None:
    judge_double.like_llama_cpp()

    async def go() -> None:
        async with client_for(judge_double, structured_output="json_object_schema") as client:
            assert (await ask(client)).ok
        async with client_for(judge_double, structured_output="json") as client:  # 0.1 name
            asked = await ask(client)
            assert not asked.ok and "refused the request format json_schema" in asked.error

    asyncio.run(go())
    assert not judge_double.probes  # a forced mode is never probed
    with pytest.raises(UsageError, match="json_object"):
        ModelClient(DryRunAPI(), structured_output="json_object")
    with pytest.raises(UsageError, match="structured_output"):
        ModelClient(DryRunAPI(), structured_output="xml")  # type: ignore[arg-type]


def test_cache_keys_of_old_runs_stay_valid_and_rungs_do_not_share_replies() -> None:
    import hashlib

    client = ModelClient(DryRunAPI())
    msgs = build("json")
    config = GenerateConfig(temperature=0.3, max_tokens=50)
    schema = Verdict.model_json_schema()
    old = hashlib.sha256(canonical({
        "model": DryRunAPI().cache_identity(), "messages": [m.model_dump() for m in msgs],
        "config": config.model_dump(exclude_none=True), "json_schema": schema, "attempt": 2,
    }).encode("utf-8")).hexdigest()
    assert client.cache_key(msgs, config, schema, 2) == old
    assert client.cache_key(msgs, config, schema, 2, "json_schema") == old
    keys = {client.cache_key(msgs, config, schema, 2, m)
            for m in ("json_schema", "json_object_schema", "json_object")}
    assert len(keys) == 3
