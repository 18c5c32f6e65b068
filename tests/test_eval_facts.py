"""``eval facts``: counts from faithfulness details, per model and between two files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from longreward.eval import compare_facts, fact_stats


def row(rid: str, model: str, supports: list[str] | None, *, meta: bool = True) -> dict:
    """A scored row; ``supports=None``: faithfulness unscored."""
    if supports is None:
        faith, score = {"n_statements": 2, "statements": []}, None
    else:
        faith = {"n_statements": len(supports),
                 "statements": [{"statement": f"s{i}", "support": s}
                                for i, s in enumerate(supports)]}
        value = {"fully": 1, "partially": 0.5, "not": 0}
        score = 10.0 * sum(value[s] for s in supports) / len(supports) if supports else 10.0
    out = {"id": rid, "prompt_id": "p", "reward": score, "scores": {"faithfulness": score},
           "details": {"faithfulness": faith}}
    if meta:
        out["meta"] = {"model": model}
    else:
        out["model"] = model
    return out


ROWS = [
    row("a1", "m1", ["fully", "fully", "not", "partially"]),
    row("a2", "m1", ["fully", "fully"]),
    row("a3", "m1", []),
    row("a4", "m1", None),
    row("b1", "m2", ["fully"], meta=False),
    row("b2", "m2", ["not", "not", "fully"], meta=False),
]


def test_counts_by_hand():
    s = fact_stats(ROWS, "model")
    m1 = s["m1"]
    assert (m1["answers"], m1["faithfulness_scored"], m1["faithfulness_unscored"]) == (4, 3, 1)
    assert m1["no_statements"] == 1 and m1["statements"] == 6
    assert m1["statements_per_answer"] == pytest.approx(6 / 3)  # the no-statement answer is 0
    assert m1["counts"] == {"fully": 4, "partially": 1, "not": 1}
    assert (m1["fully"], m1["partially"], m1["not"]) == pytest.approx((400 / 6, 100 / 6,
                                                                       100 / 6))
    # per answer with statements: 2/4 and 2/2 fully supported
    assert m1["factscore"] == pytest.approx(100 * (0.5 + 1.0) / 2)
    m2 = s["m2"]  # the group field may be top-level instead of in meta
    assert m2["statements_per_answer"] == 2 and m2["factscore"] == pytest.approx(100 * (1 + 1 / 3) / 2)
    assert list(fact_stats(ROWS)) == ["all"] and fact_stats(ROWS)["all"]["answers"] == 6
    assert fact_stats([row("x", "m", [])])["all"]["fully"] is None


def test_compare_gives_after_minus_before_for_shared_groups():
    before = fact_stats(ROWS, "model")
    after = fact_stats([*ROWS, row("a5", "m1", ["fully"] * 6)], "model")
    diff = compare_facts(before, after)
    assert diff["m2"]["statements_per_answer"] == 0
    assert diff["m1"]["statements_per_answer"] == pytest.approx(12 / 4 - 6 / 3)
    assert diff["m1"]["answers"] == 1
    assert compare_facts(before, {"other": after["m1"]}) == {}


def test_cli_one_file_by_model_and_two_files_compared(tmp_path):
    before, after = tmp_path / "before.jsonl", tmp_path / "after.jsonl"
    before.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    after.write_text("".join(json.dumps(r) + "\n" for r in
                             [*ROWS, row("a5", "m1", ["fully"] * 6)]))
    out = tmp_path / "facts.json"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "longreward", "eval", "facts", *args],
                              capture_output=True, text=True, timeout=120,
                              env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})

    r = cli(str(before), "--by", "model", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "statements per answer" in r.stderr and "m1" in r.stderr and "m2" in r.stderr
    assert json.loads(out.read_text())["stats"][0]["m1"]["statements"] == 6
    r = cli(str(before), str(after), "-o", str(out))
    assert r.returncode == 0, r.stderr
    # statements per answer: 10 in 5 scored answers, then 16 in 6
    assert "Δ" in r.stderr and "+0.67" in r.stderr
    diff = json.loads(out.read_text())["difference"]["all"]
    assert diff["statements_per_answer"] == pytest.approx(16 / 6 - 10 / 5)
