"""Opt-in: score the bundled example against a real OpenAI-compatible judge.

    LONGREWARD_TEST_BASE_URL=http://localhost:8000/v1 LONGREWARD_TEST_MODEL=name pytest -m real_endpoint
"""

from __future__ import annotations

import asyncio
import json
import os
from importlib import resources

import pytest

from longreward import LongReward, ModelClient, ScoreOptions, create_apis
from longreward.io.records import group_records

BASE_URL = os.environ.get("LONGREWARD_TEST_BASE_URL")
pytestmark = [pytest.mark.real_endpoint,
              pytest.mark.skipif(not BASE_URL, reason="LONGREWARD_TEST_BASE_URL not set")]


def test_real_judge_scores_the_faithful_answer_above_the_unfaithful_one():
    model = os.environ.get("LONGREWARD_TEST_MODEL", "default")
    path = resources.files("longreward").joinpath("examples", "candidates.jsonl")
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    records = list(group_records((f"row {i}", r) for i, r in enumerate(rows[:1])))
    client = ModelClient(create_apis("openai_compatible", model, base_urls=[BASE_URL]))
    scorer = LongReward(client, options=ScoreOptions())
    answers = {a.id: a for a in asyncio.run(scorer.score_many(records))}
    for a in answers.values():
        assert a.dimensions, a.results
    faithful = answers["harbor-report-a"].results["faithfulness"].score
    invented = answers["harbor-report-c"].results["faithfulness"].score
    assert faithful is not None and invented is not None and faithful > invented
