"""Pair selection edge cases, the four output formats (loaded with ``datasets``), the card,
and bad input rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longreward.io.records import FieldMap
from longreward.preference.pairs import (
    META_COLUMNS,
    Candidate,
    PairOptions,
    select_pair,
)
from longreward.stages.pairs import build_pairs

DIMS = ["helpfulness", "logicality", "faithfulness", "completeness"]


def cand(i: int, reward: float | None, dims: list[str] | None = None, scores: dict | None = None,
         response: str | None = None) -> Candidate:
    dims = DIMS if dims is None else dims
    return Candidate(
        id=f"p-{i}", prompt_id="p", response=response or f"answer {i}", reward=reward,
        dimensions=tuple(dims) if reward is not None else (),
        scores=scores or {d: reward for d in dims}, sample_index=i,
    )


# --------------------------------------------------------------------------- selection


def test_highest_chosen_lowest_rejected() -> None:
    sel = select_pair("p", [cand(i, r) for i, r in enumerate([5, 7, 3, 9, 6])])
    assert sel.skip is None
    assert (sel.chosen.id, sel.rejected.id, sel.margin) == ("p-3", "p-2", 6)


def test_tie_is_skipped() -> None:
    sel = select_pair("p", [cand(i, 7.0) for i in range(6)])
    assert sel.skip == "tie"


def test_ties_at_the_top_break_by_sample_order_whatever_the_row_order() -> None:
    rows = [cand(i, r) for i, r in enumerate([9, 2, 9, 2, 5])]
    a = select_pair("p", rows)
    b = select_pair("p", list(reversed(rows)))
    assert (a.chosen.id, a.rejected.id) == (b.chosen.id, b.rejected.id) == ("p-0", "p-1")


def test_all_unscored() -> None:
    assert select_pair("p", [cand(i, None) for i in range(10)]).skip == "all_unscored"


def test_fewer_than_min_candidates() -> None:
    rows = [cand(i, float(i)) for i in range(4)] + [cand(9, None)]
    assert select_pair("p", rows, min_candidates=5).skip == "too_few_candidates"
    assert select_pair("p", rows, min_candidates=4).skip is None


def test_margin_filter() -> None:
    rows = [cand(i, r) for i, r in enumerate([5.0, 5.5, 6.0, 5.2, 5.9])]
    assert select_pair("p", rows, min_margin=1.5).skip == "below_margin"
    assert select_pair("p", rows, min_margin=1.0).skip is None  # margin exactly 1.0 passes


def test_mixed_dimension_sets_use_the_largest_group_only() -> None:
    three = ["helpfulness", "logicality", "completeness"]
    # Five answers scored on all four dimensions, two on three (faithfulness unscored): the
    # 3-dimension answers hold the extreme rewards but must not be compared with the others.
    rows = [cand(i, r) for i, r in enumerate([6, 7, 5, 8, 6.5])]
    rows += [cand(5, 10.0, three), cand(6, 0.5, three)]
    sel = select_pair("p", rows)
    assert (sel.chosen.id, sel.rejected.id) == ("p-3", "p-2")
    assert set(sel.chosen.dimensions) == set(DIMS)


def test_mixed_dimension_sets_with_no_group_large_enough() -> None:
    three = ["helpfulness", "logicality", "completeness"]
    rows = [cand(i, float(i)) for i in range(3)] + [cand(3 + i, float(i), three) for i in range(3)]
    sel = select_pair("p", rows, min_candidates=5)
    assert sel.skip == "mixed_dimensions"


def test_answers_from_different_judges_are_not_compared() -> None:
    # One prompt's answers merged from two scored files: judge B scores everything lower. The
    # best of A against the worst of B would be a pair made by the judges, not the answers.
    a = [cand(i, r) for i, r in enumerate([6.0, 7.0, 6.5])]
    b = [cand(3 + i, r) for i, r in enumerate([2.0, 3.0, 2.5, 2.2])]
    for c in a:
        c.judge = {"provider": "openai_compatible", "model": "judge-a"}
    for c in b:
        c.judge = {"provider": "openai_compatible", "model": "judge-b"}
    sel = select_pair("p", a + b, min_candidates=3)
    assert (sel.chosen.id, sel.rejected.id) == ("p-4", "p-3")  # inside judge B's 4 answers
    assert select_pair("p", a + b, min_candidates=5).skip == "mixed_dimensions"


def test_dimension_rule() -> None:
    # chosen has the higher reward but is less faithful than rejected
    hi = cand(0, 8.0, scores={"helpfulness": 10, "logicality": 10, "faithfulness": 4, "completeness": 8})
    lo = cand(1, 5.0, scores={"helpfulness": 3, "logicality": 3, "faithfulness": 9, "completeness": 5})
    mid = [cand(i, 6.0) for i in range(2, 5)]
    assert select_pair("p", [hi, lo, *mid]).skip is None
    sel = select_pair("p", [hi, lo, *mid], not_worse_on=["faithfulness"])
    assert sel.skip == "dimension_rule" and "faithfulness" in sel.detail
    assert select_pair("p", [hi, lo, *mid], not_worse_on=["completeness"]).skip is None


def test_dimension_rule_on_an_unscored_dimension_cannot_pass() -> None:
    three = ["helpfulness", "logicality", "completeness"]
    rows = [cand(i, float(i), three, scores={**{d: float(i) for d in three}, "faithfulness": None})
            for i in range(5)]
    assert select_pair("p", rows, not_worse_on=["faithfulness"]).skip == "dimension_rule"


def test_identical_answers_are_not_a_pair() -> None:
    rows = [cand(i, float(i), response="same text") for i in range(5)]
    assert select_pair("p", rows).skip == "identical_answers"


# --------------------------------------------------------------------------- files


def scored_row(pid: str, k: int, reward: float | None, *, dims: list[str] | None = None,
               context: str | None = None) -> dict:
    dims = DIMS if dims is None else dims
    scores = {d: (reward if d in dims else None) for d in DIMS} if reward is not None else dict.fromkeys(DIMS)
    row = {
        "id": f"{pid}-{k}", "prompt_id": pid, "query": f"What about {pid}?",
        "response": f"Answer {k} to {pid}.", "reward": reward, "scores": scores,
        "unscored": {}, "dimensions": dims if reward is not None else [],
        "details": {}, "judge": {"provider": "dry_run", "model": "judge-x"}, "sample_index": k,
    }
    if context is not None:
        row["context"] = context
    return row


def write_jsonl(path: Path, rows: list) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


@pytest.fixture
def scored(tmp_path: Path) -> Path:
    rows = []
    for k, r in enumerate([6, 8, 4, 7, 5]):  # a: a pair (8 vs 4)
        rows.append(scored_row("a", k, float(r), context="Document A. " * 5))
    for k in range(5):  # b: tie
        rows.append(scored_row("b", k, 5.0, context="Document B."))
    for k in range(3):  # c: too few
        rows.append(scored_row("c", k, float(k), context="Document C."))
    for k in range(5):  # d: all unscored
        rows.append(scored_row("d", k, None, context="Document D."))
    for k, r in enumerate([3, 9, 5, 6, 7]):  # e: a pair (9 vs 3)
        rows.append(scored_row("e", k, float(r), context="Document E."))
    bad = ['{"id": "x-1", "prompt_id": "x"', {"id": "y-1", "response": "no prompt id"},
           {"id": "z-1", "prompt_id": "z", "response": "r", "reward": "high"}]
    return write_jsonl(tmp_path / "scored.jsonl", rows + bad)


#: exactly the columns each trainer reads, plus our metadata columns
EXPECTED = {
    "trl": {"prompt", "chosen", "rejected"},
    "trl_standard": {"prompt", "chosen", "rejected"},
    "openrlhf": {"input", "chosen_resp", "rejected_resp"},
    "sharegpt": {"conversations", "chosen", "rejected", "system"},
}


@pytest.mark.parametrize("fmt", list(EXPECTED))
def test_formats_load_with_datasets_with_the_expected_schema(scored: Path, tmp_path: Path, fmt: str) -> None:
    datasets = pytest.importorskip("datasets")
    opts = PairOptions(format=fmt, system_prompt="You are helpful.", prompt_key="input",
                       chosen_key="chosen_resp", rejected_key="rejected_resp")
    summary = build_pairs(scored, tmp_path / f"{fmt}.jsonl", opts)
    assert summary.pairs == 2
    assert dict(summary.skipped) == {"tie": 1, "too_few_candidates": 1, "all_unscored": 1}
    assert len(summary.errors) == 3  # torn line, missing prompt_id, non-numeric reward
    for suffix, builder in ((".jsonl", "json"), (".parquet", "parquet")):
        ds = datasets.load_dataset(builder, data_files=str(tmp_path / f"{fmt}{suffix}"), split="train")
        assert set(ds.column_names) == EXPECTED[fmt] | set(META_COLUMNS), (fmt, suffix)
        assert len(ds) == 2
        row = ds[0]
        assert row["prompt_id"] == "a" and row["chosen_id"] == "a-1" and row["rejected_id"] == "a-2"
        assert row["margin"] == pytest.approx(4.0)
        assert row["chosen_scores"]["helpfulness"] == pytest.approx(8.0)
        assert sorted(row["dimensions"]) == sorted(DIMS)
        if fmt == "trl":
            assert row["prompt"][0] == {"role": "system", "content": "You are helpful."}
            assert row["prompt"][1]["role"] == "user" and "Document A." in row["prompt"][1]["content"]
            assert row["chosen"] == [{"role": "assistant", "content": "Answer 1 to a."}]
            assert row["rejected"] == [{"role": "assistant", "content": "Answer 2 to a."}]
        elif fmt == "trl_standard":
            assert isinstance(row["prompt"], str) and "What about a?" in row["prompt"]
            assert row["chosen"] == "Answer 1 to a." and row["rejected"] == "Answer 2 to a."
        elif fmt == "openrlhf":
            assert row["chosen_resp"] == "Answer 1 to a." and isinstance(row["input"], str)
        else:
            assert row["conversations"][0]["from"] == "human"
            assert row["chosen"] == {"from": "gpt", "value": "Answer 1 to a."}
            assert row["system"] == "You are helpful."


def test_card_lists_config_judge_counts_and_stats(scored: Path, tmp_path: Path) -> None:
    summary = build_pairs(scored, tmp_path / "pairs.jsonl", PairOptions(min_margin=1.0))
    card = (tmp_path / "pairs.md").read_text()
    assert summary.card == str(tmp_path / "pairs.md")
    assert "dry_run/judge-x" in card
    assert "| pairs | 2 |" in card and "skipped: tie" in card
    assert '"min_margin": 1.0' in card and '"margin"' in card
    assert summary.stats["margin"]["mean"] == pytest.approx(5.0)
    # rejected records are listed beside the output, nothing silently lost
    rejected = (tmp_path / "pairs.jsonl.rejected.jsonl").read_text().splitlines()
    assert len(rejected) == 3


def test_prompt_comes_from_the_prompts_file_when_rows_lack_context(tmp_path: Path) -> None:
    rows = [scored_row("q1", k, float(k)) for k in range(5)] + [scored_row("q2", k, float(k)) for k in range(5)]
    scored = write_jsonl(tmp_path / "s.jsonl", rows)
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"idx": "q2", "doc": "Doc two.", "q": "Q2?"}])
    s = build_pairs(scored, tmp_path / "o.jsonl", PairOptions(format="trl_standard"),
                    prompts_path=prompts,
                    prompt_fields=FieldMap(id="idx", context="doc", query="q"))
    assert s.pairs == 1 and s.skipped["missing_prompt"] == 1
    (row,) = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    # the scored row's query wins over the prompts file; the document comes from the file
    assert row["prompt"] == "Doc two.\n\nWhat about q2?"


def test_push_to_hub_uploads_rows_and_card(scored: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    pushed = {}
    monkeypatch.setattr(datasets.Dataset, "push_to_hub",
                        lambda self, repo, private=False: pushed.update(repo=repo, n=len(self)))
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.DatasetCard, "push_to_hub",
                        lambda self, repo: pushed.update(card=repo))
    build_pairs(scored, tmp_path / "pairs.jsonl", PairOptions(), push_to_hub="me/pairs")
    assert pushed == {"repo": "me/pairs", "n": 2, "card": "me/pairs"}


def test_pairs_cli_exit_code_and_summary(scored: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from longreward.cli import app

    result = CliRunner().invoke(app, ["pairs", str(scored), "-o", str(tmp_path / "p.jsonl"),
                                      "--format", "sharegpt", "--not-worse-on", "faithfulness"])
    assert result.exit_code == 1, result.output  # three records were rejected
    assert (tmp_path / "p.parquet").exists() and (tmp_path / "p.md").exists()


def test_a_misspelt_rule_dimension_is_an_error() -> None:
    with pytest.raises(ValueError, match="faithfullness"):
        PairOptions(not_worse_on=["faithfullness"])
