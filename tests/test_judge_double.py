"""The judge double itself: the endpoints other tests rely on."""

from __future__ import annotations

import asyncio
import math

import openai
import pytest

from judge_double import EMBEDDING_DIM, Faults, JudgeDouble


def test_embeddings_models_and_reset(judge_double: JudgeDouble) -> None:
    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=judge_double.base_url, api_key="x", max_retries=0)
        try:
            # the SDK asks for base64 by default; floats when asked
            texts = ["the cat sat on the mat", "the cat sat", "quarterly tax revenue"]
            packed = await client.embeddings.create(model="emb", input=texts)
            plain = await client.embeddings.create(
                model="emb", input=texts, encoding_format="float"
            )
            vectors = [d.embedding for d in packed.data]
            assert all(len(v) == EMBEDDING_DIM for v in vectors)
            for a, b in zip(vectors, (d.embedding for d in plain.data), strict=True):
                assert a == pytest.approx(b, abs=1e-6)

            def cosine(a: list[float], b: list[float]) -> float:
                return sum(x * y for x, y in zip(a, b, strict=True))

            assert math.isclose(cosine(vectors[0], vectors[0]), 1.0, rel_tol=1e-5)
            assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
            models = await client.models.list()
            assert [m.id for m in models.data] == ["judge-double"]
            judge_double.required_api_key = "right"
            with pytest.raises(openai.AuthenticationError):
                await client.embeddings.create(model="emb", input="x")
        finally:
            await client.close()

    asyncio.run(go())
    assert judge_double.count("/embeddings") == 3
    judge_double.reset()
    assert judge_double.count() == 0 and judge_double.required_api_key is None


def test_fault_kinds_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        Faults(kinds=("418",))
    with JudgeDouble() as double, pytest.raises(ValueError):
        double.queue_faults("nope")
