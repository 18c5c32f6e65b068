"""A pair format is one class in ``preference/formats.py``: registering it is all that the
options, the CLI, the pairs stage, its dataset card and the training reader need."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from longreward.preference import formats
from longreward.preference.formats import (
    PairExample,
    PairFormatSpec,
    PairKeys,
    pair_format,
    pair_from_row,
)
from longreward.preference.pairs import PairOptions
from longreward.stages.pairs import build_pairs
from longreward.train.config import TrainConfig


@pytest.fixture
def good_bad_format() -> Iterator[str]:
    @pair_format
    class GoodBad(PairFormatSpec):
        name = "good_bad"

        def describe(self, keys: PairKeys) -> str:
            return "good/bad test format (`question`, `good`, `bad`)"

        def to_row(self, pair: PairExample, keys: PairKeys) -> dict[str, Any]:
            return {"question": pair.prompt[-1]["content"], "good": pair.chosen,
                    "bad": pair.rejected}

        def claims(self, row: dict[str, Any], keys: PairKeys) -> bool:
            return {"question", "good", "bad"} <= set(row)

        def from_row(self, row: dict[str, Any], keys: PairKeys, record: str
                     ) -> tuple[PairExample, set[str]]:
            return (PairExample([{"role": "user", "content": row["question"]}], row["good"],
                                row["bad"]), {"question", "good", "bad"})

    yield "good_bad"
    formats._FORMATS.pop("good_bad")


def test_a_registered_format_reaches_options_pairs_card_and_training(good_bad_format: str,
                                                                     tmp_path: Path) -> None:
    rows = [{"id": f"a{k}", "prompt_id": "p", "context": "Doc.", "query": "Q?",
             "response": f"Answer {k}.", "reward": float(k), "scores": {"helpfulness": k},
             "dimensions": ["helpfulness"], "judge": {"model": "j"}} for k in range(5)]
    scored = tmp_path / "scored.jsonl"
    scored.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = build_pairs(scored, tmp_path / "pairs.jsonl", PairOptions(format=good_bad_format))
    assert summary.pairs == 1
    [row] = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert row["good"] == "Answer 4." and row["bad"] == "Answer 0."
    assert "good/bad test format" in (tmp_path / "pairs.md").read_text()
    pair = pair_from_row(row)  # told apart from the others by its own claims
    assert pair.chosen == "Answer 4." and pair.meta["prompt_id"] == "p"
    assert TrainConfig(format=good_bad_format).format == good_bad_format


def test_an_unknown_format_names_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="trl, trl_standard, openrlhf"):
        PairOptions(format="nope")
    with pytest.raises(ValueError, match="auto, sharegpt"):
        TrainConfig(format="nope")
