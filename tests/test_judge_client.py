"""ModelClient against the judge double over real HTTP (httpx, the openai wire format).

Most tests fix ``structured_output="json_schema"`` so that the structured-output probe does
not take a request; the ladder itself is tested in ``test_ladder.py``."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from longreward.errors import LongRewardError
from longreward.judge import (
    Asked,
    ContextTooLongError,
    GenerateConfig,
    JudgeFatalError,
    Message,
    ModelClient,
    ModelError,
    OpenAICompatibleAPI,
    PermanentError,
    Price,
    ReplyMode,
    ReplyParseError,
    RetryableError,
    create_apis,
)
from longreward.store import RunStore

from judge_double import Faults, JudgeDouble

MODEL = "judge-double"
SECRET = "sk-test-THIS-KEY-MUST-NOT-LEAK-0123456789"


class Verdict(BaseModel):
    analysis: str
    score: int = Field(ge=0, le=10)


def parse_verdict(text: str) -> Verdict:
    found = re.findall(r"\[\[(\d+(?:\.\d+)?)\]\]", text)
    if not found:
        raise ReplyParseError("no [[score]] in the reply")
    return Verdict(analysis=text, score=min(10, round(float(found[-1]))))


def messages(mode: ReplyMode = "json", question: str = "What did the cat do?") -> list[Message]:
    ending = "Reply in JSON." if mode == "json" else "End with the score as [[score]]."
    return [
        Message(role="system", content=f"You are a careful judge. {ending}"),
        Message(
            role="user",
            content=f"Document: The cat sat on the mat. It was warm. Question: {question} "
            "Answer: The cat sat on the mat. It purred.",
        ),
    ]


def client_for(double: JudgeDouble, **options: Any) -> ModelClient:
    api = OpenAICompatibleAPI(
        MODEL, base_url=double.base_url, api_key=options.pop("api_key", SECRET)
    )
    options.setdefault("backoff_base", 0.01)
    options.setdefault("timeout", 5.0)
    options.setdefault("structured_output", "json_schema")
    return ModelClient(api, **options)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def ask(client: ModelClient, **kw: Any) -> Asked[Verdict]:
    question = kw.pop("question", "What did the cat do?")
    return await client.ask(
        lambda mode: messages(mode, question), Verdict, parse_verdict, tag=kw.pop("tag", "t"), **kw
    )


# ---------------------------------------------------------------------- success, cache


def test_success_with_usage(judge_double: JudgeDouble) -> None:
    async def go() -> None:
        async with client_for(judge_double) as client:
            out = await client.generate(messages(), GenerateConfig(), tag="helpfulness")
            assert out.text.endswith("]]") and not out.cached
            assert out.usage.prompt_tokens > 0 and out.usage.completion_tokens > 0
            three = await client.generate(messages(), GenerateConfig(n=3, temperature=0.7))
            assert len(three.texts) == 3 and len(set(three.texts)) == 3
            assert three.usage.cached_tokens > 0  # the double saw this system prompt before
            snap = client.snapshot()
            assert snap["requests"] == 2
            assert snap["by_tag"]["helpfulness"]["prompt_tokens"] == out.usage.prompt_tokens
            assert snap["prompt_tokens"] == out.usage.prompt_tokens + three.usage.prompt_tokens

    run(go())
    assert judge_double.count("/chat/completions") == 2


def test_complete_text_endpoint(judge_double: JudgeDouble) -> None:
    async def go() -> None:
        api = OpenAICompatibleAPI(MODEL, base_url=judge_double.base_url)
        out = await api.complete_text(
            "Once there was a cat. It sat. It slept.", GenerateConfig(n=2)
        )
        assert len(out.texts) == 2 and out.usage.prompt_tokens > 0
        await api.aclose()

    run(go())
    assert judge_double.count("/v1/completions") == 1


def test_cache_hit_makes_no_request(judge_double: JudgeDouble, tmp_path: Path) -> None:
    async def go(store: RunStore) -> None:
        async with client_for(judge_double, cache=store) as client:
            first = await client.generate(messages(), GenerateConfig(), tag="a")
            second = await client.generate(messages(), GenerateConfig(), tag="a")
            assert second.cached and not first.cached
            assert second.texts == first.texts
            assert client.stats.total.cache_hits == 1 and client.stats.total.requests == 1
            # attempt is part of the key: a re-ask is not served the cached reply
            await client.generate(messages(), GenerateConfig(), tag="a", attempt=1)

    with RunStore(tmp_path) as store:
        run(go(store))
    assert judge_double.count("/chat/completions") == 2

    async def again() -> None:  # a new run on the same store: everything comes from the cache
        with RunStore(tmp_path) as store:
            async with client_for(judge_double, cache=store) as client:
                asked = await ask(client)
                assert asked.ok
                out = await client.generate(messages(), GenerateConfig(), tag="a")
                assert out.cached

    run(again())
    assert judge_double.count("/chat/completions") == 3  # only the ask was new


def test_a_reply_made_under_other_extra_body_fields_is_not_reused(
        judge_double: JudgeDouble, tmp_path: Path) -> None:
    """extra_body changes what the server does (sampling fields, server options), so it is
    part of the cache key; no extra_body keeps the key it always had."""
    def once(extra: dict[str, Any] | None) -> bool:
        api = OpenAICompatibleAPI(MODEL, base_url=judge_double.base_url, api_key=SECRET,
                                  extra_body=extra)

        async def go() -> bool:
            with RunStore(tmp_path) as store:
                async with ModelClient(api, cache=store, structured_output="json_schema",
                                       timeout=5.0) as client:
                    return (await client.generate(messages(), GenerateConfig(), tag="a")).cached

        return run(go())

    assert not once(None) and once(None)
    assert not once({"repeat_penalty": 1.0}) and once({"repeat_penalty": 1.0})
    assert not once({"repeat_penalty": 1.1})
    assert judge_double.count("/chat/completions") == 3


# ---------------------------------------------------------------------- retries


def test_429_retry_after_is_honoured(judge_double: JudgeDouble) -> None:
    judge_double.faults = Faults(rate=0.0, retry_after=0.4)
    judge_double.queue_faults("429")

    async def go() -> float:
        async with client_for(judge_double, backoff_base=0.001) as client:
            start = time.monotonic()
            out = await client.generate(messages(), GenerateConfig())
            assert out.text
            assert client.stats.total.retries == 1
            return time.monotonic() - start

    elapsed = run(go())
    assert elapsed >= 0.4
    assert judge_double.count("/chat/completions") == 2


def test_500_is_retried(judge_double: JudgeDouble) -> None:
    judge_double.queue_faults("500", "500")

    async def go() -> None:
        async with client_for(judge_double) as client:
            assert (await ask(client)).ok
            assert client.stats.total.retries == 2

    run(go())
    assert judge_double.count("/chat/completions") == 3


def test_timeout_is_retried(judge_double: JudgeDouble) -> None:
    judge_double.faults = Faults(rate=0.0, timeout_s=1.5)
    judge_double.queue_faults("timeout")

    async def go() -> None:
        async with client_for(judge_double, timeout=0.3) as client:
            out = await client.generate(messages(), GenerateConfig())
            assert out.text and client.stats.total.retries == 1

    run(go())
    assert judge_double.count("/chat/completions") == 2


def test_retries_exhausted_raise_then_ask_reports(judge_double: JudgeDouble) -> None:
    judge_double.faults = Faults(rate=1.0, kinds=("500",))

    async def go() -> None:
        async with client_for(judge_double, max_retries=2) as client:
            with pytest.raises(RetryableError):
                await client.generate(messages(), GenerateConfig())
            asked = await ask(client)
            assert asked.value is None and "retries exhausted" in (asked.error or "")
            assert client.stats.total.failures == 2

    run(go())
    assert judge_double.count("/chat/completions") == 6


def test_permanent_errors_are_not_retried(judge_double: JudgeDouble) -> None:
    judge_double.fail_with = (400, "temperature must be at most 2")

    async def go() -> None:
        async with client_for(judge_double) as client:
            with pytest.raises(PermanentError) as info:
                await client.generate(messages(), GenerateConfig())
            assert info.value.status == 400
            assert not isinstance(info.value, ContextTooLongError)
            assert client.stats.total.retries == 0

    run(go())
    assert judge_double.count("/chat/completions") == 1


def test_context_too_long_is_classified(judge_double: JudgeDouble) -> None:
    judge_double.context_limit = 5

    async def go() -> None:
        async with client_for(judge_double) as client:
            with pytest.raises(ContextTooLongError):
                await client.generate(messages(), GenerateConfig())
            asked = await ask(client)
            assert asked.value is None and "ContextTooLongError" in (asked.error or "")

    run(go())
    assert judge_double.count("/chat/completions") == 2


# ---------------------------------------------------------------------- structured replies


def test_schema_rejection_switches_to_text_once(
    judge_double: JudgeDouble, caplog: pytest.LogCaptureFixture
) -> None:
    judge_double.reject_schema = True

    async def go() -> None:
        async with client_for(judge_double, structured_output="auto") as client:
            with caplog.at_level(logging.WARNING, logger="longreward.judge"):
                first, second = await asyncio.gather(ask(client, question="one?"),
                                                     ask(client, question="two?"))
            assert first.ok and second.ok
            assert first.mode == second.mode == "text" == client.reply_mode
            assert first.attempts == 1  # the rejected requests are not attempts

    run(go())
    # one probe climbs down the three JSON rungs, then both asks go out as text
    probes = [r["body"]["response_format"] for r in judge_double.probes]
    assert [f["type"] for f in probes] == ["json_schema", "json_object", "json_object"]
    assert "schema" in probes[1] and "schema" not in probes[2]
    bodies = [r["body"] for r in judge_double.requests]
    assert len(bodies) == 2 and not any("response_format" in b for b in bodies)
    assert "Reply in JSON" not in bodies[0]["messages"][0]["content"]  # text-mode prompt
    assert len([r for r in caplog.records if "takes no JSON reply format" in r.message]) == 1


def test_text_mode_forced_never_sends_a_schema(judge_double: JudgeDouble) -> None:
    async def go() -> None:
        async with client_for(judge_double, structured_output="text") as client:
            assert (await ask(client)).mode == "text"

    run(go())
    assert all("response_format" not in r["body"] for r in judge_double.requests)


def test_json_mode_reply_is_validated(judge_double: JudgeDouble) -> None:
    async def go() -> None:
        async with client_for(judge_double) as client:
            asked = await ask(client)
            assert asked.ok and asked.mode == "json" and isinstance(asked.value, Verdict)
            assert 0 <= asked.value.score <= 10
            assert asked.raw and asked.calls == 1

    run(go())
    body = judge_double.requests[0]["body"]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["title"] == "Verdict"


def test_unparsable_replies_are_reasked_then_unscored(judge_double: JudgeDouble) -> None:
    judge_double.responder = lambda body: "I would rather not give a score."

    async def go() -> None:
        async with client_for(judge_double, structured_output="text") as client:
            asked = await ask(client, config=GenerateConfig(temperature=0.0), attempts=5)
            assert asked.value is None
            assert asked.error and "no parsable reply after 5" in asked.error
            assert "[[score]]" in asked.error
            assert asked.raw == ["I would rather not give a score."] * 5
            assert client.stats.total.unscored == 1 and client.stats.total.unparsable == 5

    run(go())
    temperatures = [r["body"]["temperature"] for r in judge_double.requests]
    assert temperatures == [0.0, 0.95, 0.95, 0.95, 0.95]
    # each sampled re-ask carries its own fixed seed: a server that honours seeds gives the
    # same re-ask reply on every run (online and batch runs agree with a real model too)
    assert [r["body"].get("seed") for r in judge_double.requests] == [None, 1, 2, 3, 4]


def test_a_reply_cut_before_its_verdict_is_reasked_with_a_larger_budget(
        judge_double: JudgeDouble) -> None:
    """A judge that analyses at length before its verdict: at max_tokens=40 the reply is cut
    before the score (a real server's finish_reason "length"), and a re-ask at the same
    budget would be cut again. The re-asks double the budget, up to 4x the configured one."""
    analysis = " ".join(f"Claim {i} of the answer is in paragraph {i + 2}." for i in range(12))
    judge_double.responder = lambda body: f"{analysis} Score: [[8]]"
    judge_double.honour_max_tokens = True

    async def go(max_tokens: int, attempts: int) -> Asked[Verdict]:
        async with client_for(judge_double, structured_output="text") as client:
            asked = await ask(client, config=GenerateConfig(temperature=0.0,
                                                            max_tokens=max_tokens),
                              attempts=attempts)
            assert client.stats.total.cut == asked.attempts - (1 if asked.ok else 0)
            return asked

    asked = run(go(40, 5))
    assert asked.ok and asked.value is not None and asked.value.score == 8
    assert [r["body"]["max_tokens"] for r in judge_double.requests] == [40, 80, 160]

    judge_double.reset()
    judge_double.responder = lambda body: f"{analysis} {analysis.upper()} {analysis.lower()} " \
        f"{analysis.swapcase()} Score: [[8]]"  # ≈500 tokens, no loop
    judge_double.honour_max_tokens = True
    asked = run(go(40, 5))
    assert asked.value is None
    # never past 4x the configured budget, and the reason says what to raise
    assert [r["body"]["max_tokens"] for r in judge_double.requests] == [40, 80, 160, 160, 160]
    assert "cut at max_tokens=160 before its verdict" in (asked.error or "")
    assert "raise --max-tokens" in (asked.error or "")


def test_cut_replies_grow_their_budget_to_4x_and_not_past_the_default():
    from longreward.judge._client import cut_reply

    def budgets(configured: int, asks: int = 6) -> list[int]:
        out, used = [configured], configured
        for _ in range(asks - 1):
            _, used = cut_reply(used, configured)
            out.append(used)
        return out

    assert budgets(40) == [40, 80, 160, 160, 160, 160]
    assert budgets(1000) == [1000, 2000, 2048, 2048, 2048, 2048]
    assert budgets(2048) == [2048] * 6  # the default: a reply cut there is a loop
    assert budgets(4096) == [4096] * 6
    reason, budget = cut_reply(None, None)  # the server's own limit: nothing to grow
    assert budget is None and "--max-tokens" in reason


def test_loops_are_told_from_long_analyses():
    from longreward.judge._client import looped

    # the real 1.5B judge's loop: two sentences (215 characters) over and over, cut mid-way
    pair = ("The surplus fell because of the completion of the lighting replacement programme, "
            "which reduced costs by £0.9 million compared with the previous year. This is a "
            "valid reason for the fall, but it is not the only reason. ")

    def loops_on(text: str, unit: str) -> bool:  # the piece found may start anywhere in it
        found = looped(text)
        return found is not None and len(found) == len(unit) and found in unit * 2

    assert loops_on('{"analysis": "The statement is supported. ' + pair * 8 + pair[:90], pair)
    assert loops_on('{"analysis": "10.' + "1." * 900, "1.")
    assert loops_on('{"errors": [' + '"10", ' * 300, '"10", ')
    # a long analysis that moves on is not a loop, nor is a short repeat
    assert looped(" ".join(f"Claim {i} of the answer is in paragraph {i + 2}." for i in range(200))) is None
    assert looped("The answer is 10.10.10") is None


def test_a_reply_that_loops_until_it_is_cut_keeps_its_budget(judge_double: JudgeDouble) -> None:
    """A small judge at temperature 0 can loop ("1.1.1.1…") until max_tokens ends it: more
    tokens would make a longer loop, so the re-asks (sampled) keep the budget."""
    judge_double.responder = lambda body: '{"analysis": "10.' + "1." * 400
    judge_double.honour_max_tokens = True

    async def go() -> Asked[Verdict]:
        async with client_for(judge_double) as client:
            return await ask(client, config=GenerateConfig(temperature=0.0, max_tokens=100),
                             attempts=3)

    asked = run(go())
    assert asked.value is None and "looped ('.1.1.1" in (asked.error or "")
    assert [r["body"]["max_tokens"] for r in judge_double.requests] == [100, 100, 100]


def test_a_reply_not_cut_is_reasked_with_the_same_budget(judge_double: JudgeDouble) -> None:
    judge_double.responder = lambda body: "no score"
    judge_double.honour_max_tokens = True

    async def go() -> None:
        async with client_for(judge_double, structured_output="text") as client:
            asked = await ask(client, config=GenerateConfig(temperature=0.0, max_tokens=40),
                              attempts=3)
            assert asked.value is None and "cut" not in (asked.error or "")
            assert client.stats.total.cut == 0

    run(go())
    assert [r["body"]["max_tokens"] for r in judge_double.requests] == [40, 40, 40]


def test_bad_json_then_fenced_json_is_accepted(judge_double: JudgeDouble) -> None:
    replies = iter(["", "not json {", '```json\n{"analysis": "fine", "score": 7}\n```'])
    judge_double.responder = lambda body: next(replies)

    async def go() -> None:
        async with client_for(judge_double) as client:
            asked = await ask(client)
            assert asked.ok and asked.value is not None and asked.value.score == 7
            assert asked.attempts == 3 and len(asked.raw) == 3 and asked.raw[0] == ""

    run(go())


def test_out_of_range_json_is_unparsable(judge_double: JudgeDouble) -> None:
    judge_double.responder = lambda body: '{"analysis": "x", "score": 99}'

    async def go() -> None:
        async with client_for(judge_double) as client:
            asked = await ask(client, attempts=2)
            assert asked.value is None and "Verdict" in (asked.error or "")

    run(go())


def test_reasks_at_same_temperature_reach_the_model(
    judge_double: JudgeDouble, tmp_path: Path
) -> None:
    judge_double.responder = lambda body: "no score"

    async def go() -> None:
        with RunStore(tmp_path) as store:
            async with client_for(judge_double, cache=store, structured_output="text") as client:
                asked = await ask(client, attempts=3, retry_temperature=0.0)
                assert asked.value is None

    run(go())
    assert judge_double.count() == 3


def test_mixed_faults_every_ask_ends_cleanly(judge_double: JudgeDouble) -> None:
    # The client's timeout is well above what a loaded machine needs to answer 50 concurrent
    # requests (0.4 s was not, on 2 busy cores), and the double's hang well above it.
    judge_double.faults = Faults(rate=0.2, seed=1, retry_after=0.01, timeout_s=5.0)

    async def go() -> list[Asked[Verdict]]:
        async with client_for(judge_double, timeout=2.5, max_retries=4) as client:
            results = await asyncio.gather(*(ask(client, question=f"q{i}?") for i in range(50)))
            snap = client.snapshot()
            assert snap["retries"] > 0 and snap["in_flight"] == 0
            return list(results)

    results = run(go())
    assert len(results) == 50
    for asked in results:
        assert (asked.value is not None) != (asked.error is not None)
    assert sum(a.ok for a in results) >= 45


# ---------------------------------------------------------------------- scale, limits, cost


def test_several_base_urls_share_the_load(judge_double: JudgeDouble) -> None:
    with JudgeDouble() as other:
        judge_double.delay = other.delay = 0.05

        async def go() -> None:
            apis = create_apis("openai", MODEL, base_urls=[judge_double.base_url, other.base_url])
            async with ModelClient(apis) as client:
                await asyncio.gather(
                    *(
                        client.generate(messages(question=f"q{i}"), GenerateConfig())
                        for i in range(20)
                    )
                )

        run(go())
        assert judge_double.count() > 3 and other.count() > 3
        assert judge_double.count() + other.count() == 20


def test_rpm_limiter_delays(judge_double: JudgeDouble) -> None:
    async def timed(**options: Any) -> float:
        async with client_for(judge_double, **options) as client:
            start = time.monotonic()
            await asyncio.gather(
                *(client.generate(messages(question=f"q{i}"), GenerateConfig()) for i in range(15))
            )
            return time.monotonic() - start

    free = run(timed())
    limited = run(timed(rpm=600))  # 10/s with a burst of 10: the last 5 wait ≈0.5 s
    assert limited >= 0.4
    assert free < limited


def test_tpm_limiter_delays(judge_double: JudgeDouble) -> None:
    long_question = "why? " * 400  # ≈500 tokens per request

    async def go() -> float:
        async with client_for(judge_double, tpm=60_000) as client:  # 1000 tokens/s
            start = time.monotonic()
            await asyncio.gather(
                *(
                    client.generate(messages(question=f"{i} {long_question}"), GenerateConfig())
                    for i in range(4)
                )
            )
            return time.monotonic() - start

    assert run(go()) >= 0.5


def test_stats_and_cost(judge_double: JudgeDouble) -> None:
    price = Price(input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5)

    async def go() -> None:
        async with client_for(judge_double, prices=price) as client:
            for tag in ("helpfulness", "logicality", "helpfulness"):
                await ask(client, tag=tag, question=f"{tag}?")
            total = client.stats.total
            tags = client.stats.by_tag
            assert tags["helpfulness"].asks == 2 and tags["logicality"].asks == 1
            assert total.requests == sum(t.requests for t in tags.values()) == 3
            assert total.usage.prompt_tokens == sum(t.usage.prompt_tokens for t in tags.values())
            u = total.usage
            expected = (
                (u.prompt_tokens - u.cached_tokens) * 2.0
                + u.cached_tokens * 0.5
                + u.completion_tokens * 8.0
            ) / 1e6
            assert client.cost_usd() == pytest.approx(expected)
            assert client.snapshot()["cost_usd"] == pytest.approx(expected)
            assert u.cached_tokens > 0
        async with client_for(judge_double) as unpriced:
            assert unpriced.cost_usd() is None

    run(go())


def test_embedding_estimates_stay_out_of_judge_totals_and_cost(judge_double: JudgeDouble) -> None:
    price = Price(input_per_mtok=2.0, output_per_mtok=8.0)

    async def go() -> None:
        async with client_for(judge_double, prices=price) as client:
            await ask(client)
            judge_usage = client.stats.total.usage
            judge_cost = client.cost_usd()
            await client.embed(["some chunk of the document " * 50] * 8)
            # before: the embedding estimate was added to the judge's prompt tokens and
            # priced at the chat input price
            assert client.stats.total.usage == judge_usage
            assert client.cost_usd() == judge_cost
            assert client.stats.by_tag["embed"].usage.prompt_tokens > 0
            assert client.stats.by_tag["embed"].requests == 1

    run(go())


def test_api_key_is_never_stored_or_shown(judge_double: JudgeDouble, tmp_path: Path) -> None:
    judge_double.required_api_key = SECRET

    async def go() -> None:
        with RunStore(tmp_path) as store:
            async with client_for(judge_double, cache=store) as client:
                assert (await ask(client)).ok
                await client.generate(messages(), GenerateConfig(n=2))
                assert SECRET not in repr(client.apis[0])
                store.set_meta("judge", {"model": MODEL, "base_url": judge_double.base_url})
        # a server that echoes the key back: the error we keep must not carry it
        judge_double.fail_with = (401, f"Incorrect API key provided: {SECRET}.")
        async with client_for(judge_double) as client:
            with pytest.raises(JudgeFatalError) as info:
                await ask(client)
            assert SECRET not in str(info.value) and "API key" in str(info.value)

    run(go())
    for path in tmp_path.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path


def test_endpoints_must_serve_one_model() -> None:
    with pytest.raises(ValueError, match="same provider and model"):
        ModelClient([OpenAICompatibleAPI("a"), OpenAICompatibleAPI("b")])


def test_identical_calls_in_flight_are_sent_once(judge_double: JudgeDouble, tmp_path: Path) -> None:
    judge_double.delay = 0.1

    async def go() -> None:
        with RunStore(tmp_path) as store:
            async with client_for(judge_double, cache=store) as client:
                outs = await asyncio.gather(
                    *(client.generate(messages(), GenerateConfig(), tag="s") for _ in range(5))
                )
                assert len({o.text for o in outs}) == 1
                assert sum(not o.cached for o in outs) == 1
                assert client.stats.total.cache_hits == 4
                # a failing leader fails its followers too, with one request
                judge_double.fail_with = (400, "bad request")
                results = await asyncio.gather(
                    *(client.generate(messages(question="x?"), GenerateConfig()) for _ in range(3)),
                    return_exceptions=True,
                )
                assert all(isinstance(r, PermanentError) for r in results)

    run(go())
    assert judge_double.count() == 2


# ---------------------------------------------------------------------- fail fast, health


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda d: setattr(d, "required_api_key", "another-key"), "API key"),
        (lambda d: setattr(d, "fail_with", (403, "Forbidden for this project")), "API key"),
        (lambda d: setattr(d, "models", {"some-other-model"}), "--model"),
    ],
)
def test_refused_key_or_unknown_model_stops_the_run_at_once(
        judge_double: JudgeDouble, setup: Any, words: str) -> None:
    """Before: every one of the run's requests was sent and failed the same way."""
    setup(judge_double)

    async def go() -> None:
        async with client_for(judge_double, structured_output="auto") as client:
            results = await asyncio.gather(*(ask(client, question=f"q{i}") for i in range(40)),
                                           return_exceptions=True)
            assert all(isinstance(r, JudgeFatalError) for r in results)
            with pytest.raises(JudgeFatalError):  # and every later call, without a request
                await client.generate(messages(), GenerateConfig())

    run(go())
    # the probe met the error; nothing else was sent
    assert judge_double.count() == 0 and len(judge_double.probes) == 1
    assert issubclass(JudgeFatalError, LongRewardError)
    assert not issubclass(JudgeFatalError, ModelError)


def test_the_same_permanent_error_in_a_row_is_fatal(judge_double: JudgeDouble) -> None:
    judge_double.fail_with = (400, "max_tokens must be at most 512, got 2048")

    async def go() -> None:
        async with client_for(judge_double, fatal_after=3) as client:
            for i in range(2):  # one record's problem, twice: still results
                asked = await ask(client, question=f"q{i}")
                assert asked.value is None and "max_tokens" in (asked.error or "")
            with pytest.raises(JudgeFatalError, match="3 calls in a row") as info:
                await ask(client, question="q2")
            assert "max_tokens must be at most" in str(info.value)
            with pytest.raises(JudgeFatalError):
                await ask(client, question="q3")

    run(go())
    assert judge_double.count() == 3


def test_the_same_500_after_all_retries_in_a_row_is_fatal_but_an_outage_is_not(
        judge_double: JudgeDouble) -> None:
    """A server that answers every call with the same 500, retries included, stops the run
    (before: 344 requests and every answer unscored); 503s are an outage and only ever leave
    the call unscored, and so are 500s from a server that has answered before."""
    async def calls(n: int, status: int, message: str, *, worked_first: bool = False
                    ) -> list[Any]:
        async with client_for(judge_double, fatal_after=3, max_retries=1) as client:
            if worked_first:
                assert (await ask(client, question="ok")).value is not None
            judge_double.fail_with = (status, message)
            out: list[Any] = []
            for i in range(n):
                try:
                    out.append(await ask(client, question=f"q{i}"))
                except JudgeFatalError as exc:
                    out.append(exc)
            return out

    got = run(calls(5, 503, "upstream overloaded"))
    assert all(not isinstance(r, JudgeFatalError) and r.value is None for r in got)
    got = run(calls(5, 500, "Internal error: the sampler crashed (tensor 17)"))
    assert [isinstance(r, JudgeFatalError) for r in got] == [False, False, True, True, True]
    assert "3 calls in a row" in str(got[2]) and "sampler crashed" in str(got[2])
    assert "rerun the same command" in str(got[2])
    # once the server has answered, a run of 500s may be one bad document's: never fatal
    judge_double.fail_with = None
    got = run(calls(5, 500, "Internal error: the sampler crashed (tensor 17)",
                    worked_first=True))
    assert all(not isinstance(r, JudgeFatalError) and r.value is None for r in got)


def test_different_errors_and_successes_reset_the_streak(judge_double: JudgeDouble) -> None:
    async def go() -> None:
        async with client_for(judge_double, fatal_after=2) as client:
            judge_double.fail_with = (400, "bad thing A")
            assert not (await ask(client, question="1")).ok
            judge_double.fail_with = None
            assert (await ask(client, question="2")).ok
            judge_double.fail_with = (400, "bad thing A")
            assert not (await ask(client, question="3")).ok
            judge_double.context_limit, judge_double.fail_with = 5, None  # a record's problem
            assert not (await ask(client, question="4")).ok
            judge_double.context_limit, judge_double.fail_with = None, (400, "bad thing A")
            assert not (await ask(client, question="5")).ok

    run(go())


def test_retry_after_is_capped_and_a_long_wait_is_shown(
        judge_double: JudgeDouble, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import longreward.judge._retries as retries

    monkeypatch.setattr(retries, "LONG_WAIT_S", 0.1)  # "long" for a test
    judge_double.faults = Faults(rate=0.0, retry_after=3600)
    judge_double.queue_faults("429")

    async def go() -> None:
        async with client_for(judge_double, max_retry_after=0.3) as client:
            with caplog.at_level(logging.WARNING, logger="longreward.judge"):
                out = await client.generate(messages(), GenerateConfig())
            assert out.text and client.stats.total.retries == 1
            assert client.snapshot()["notices"] == []  # cleared by the reply

    run(go())
    shown = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert len(shown) == 1 and "Retry-After 3600s" in shown[0]
    assert "capped at max_retry_after=0.3s" in shown[0]


def test_a_dead_endpoint_is_reported_at_once(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = OpenAICompatibleAPI(MODEL, base_url=f"http://127.0.0.1:{port}/v1")

    async def go() -> None:
        async with ModelClient(api, max_retries=2, backoff_base=0.01) as client:
            with caplog.at_level(logging.WARNING, logger="longreward.judge"), \
                    pytest.raises(RetryableError):
                await client.generate(messages(), GenerateConfig())
            notices = client.snapshot()["notices"]
            assert len(notices) == 1 and "not answering" in notices[0]

    run(go())
    warned = [r.getMessage() for r in caplog.records if "is not answering" in r.getMessage()]
    assert len(warned) == 1 and f":{port}/v1" in warned[0]  # once, not once per retry


def test_a_silent_endpoint_is_reported_by_the_progress_snapshot(
        judge_double: JudgeDouble, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    import longreward.judge._transport as transport

    monkeypatch.setattr(transport, "STALL_S", 0.2)
    judge_double.delay = 0.8

    async def go() -> None:
        async with client_for(judge_double) as client:
            task = asyncio.ensure_future(client.generate(messages(), GenerateConfig()))
            await asyncio.sleep(0.5)
            with caplog.at_level(logging.WARNING, logger="longreward.judge"):
                notices = client.snapshot()["notices"]
            assert len(notices) == 1 and "no reply from" in notices[0]
            await task
            assert client.snapshot()["notices"] == []

    run(go())
    assert any("no reply from" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------- secrets


def test_header_values_and_bearer_tokens_are_redacted_everywhere(
        judge_double: JudgeDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before: a server that echoed request headers in an error put an X-Token value into
    the output rows and the SQLite file."""
    token = "tok-PRIVATE-7f3a9c21"
    bearer = "Bearer eyJhbGciOi.unknownsecretvalue123"
    judge_double.fail_with = (500, f"upstream said no; headers were x-token={token}, "
                                   f"authorization: {bearer}")
    api = OpenAICompatibleAPI(MODEL, base_url=judge_double.base_url,
                              extra_headers={"X-Token": token})

    async def go() -> None:
        with RunStore(tmp_path) as store:
            client = ModelClient(api, cache=store, max_retries=1, backoff_base=0.01,
                                 structured_output="json_schema")
            async with client:
                with caplog.at_level(logging.DEBUG, logger="longreward"):
                    asked = await ask(client)
                assert asked.value is None and asked.error
                store.record("score", "a1", {"unscored": {"helpfulness": asked.error},
                                             "raw": asked.raw})
                for text in (asked.error, repr(api)):
                    assert token not in text and "unknownsecretvalue123" not in text
                assert "***" in asked.error

    run(go())
    for path in tmp_path.iterdir():
        blob = path.read_bytes()
        assert token.encode() not in blob and b"unknownsecretvalue123" not in blob, path
    for record in caplog.records:
        assert token not in record.getMessage()
        assert "unknownsecretvalue123" not in record.getMessage()


@pytest.mark.parametrize("text", [
    "Authorization: Bearer abcdef123456789",
    '{"api_key": "sk-live-0123456789abcdefXYZ"}',
    "token=deadbeefcafe0001&x=1",
    "see https://user:hunter22@judge.example/v1",
    "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpM",
])
def test_credential_shaped_strings_are_redacted(text: str) -> None:
    from longreward.judge import redact

    clean = redact(text)
    assert "***" in clean
    for secret in ("abcdef123456789", "sk-live-0123456789abcdefXYZ", "deadbeefcafe0001",
                   "hunter22", "SflKxwRJSMeKKF2QT4fwpM"):
        assert secret not in clean
    assert redact("the score is 7 and the answer cites page 12") == (
        "the score is 7 and the answer cites page 12")
