"""``eval reference``: grades against a reference answer with few-shot examples, ×10 per
group, English and Chinese prompts, answers from a file or generated from a policy."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval_judge import EvalJudge, block
from longreward import ScoreOptions
from longreward.eval import ReferenceOptions, evaluate_reference
from longreward.preference.sampling import SampleOptions

QUESTIONS = [
    {"id": "q1", "context": "The harvest report. " * 40, "query": "How large was the harvest?",
     "reference": "It was 40 tonnes, twice the year before.",
     "examples": [{"answer": "About 40 tonnes.", "score": 7},
                  {"answer": "No idea.", "score": 1}]},
    {"id": "q2", "context": "收成报告。" * 60, "query": "今年的收成有多少？",
     "reference": "四十吨，是去年的两倍。"},
    {"id": "q3", "context": "x", "query": "q?", "reference": "r",
     "examples": [{"answer": "a", "score": 11}]},
]
ANSWERS = [
    {"id": "a1", "prompt_id": "q1", "model": "A", "response": "Forty tonnes. R=8"},
    {"id": "a2", "prompt_id": "q2", "model": "A", "response": "四十吨。R=6"},
    {"id": "b1", "prompt_id": "q1", "model": "B", "response": "Not stated. R=2"},
    {"id": "b2", "prompt_id": "q2", "model": "B", "response": "很多。R=3"},
    {"id": "c1", "prompt_id": "q9", "model": "B", "response": "lost R=9"},
]


def write(tmp: Path) -> tuple[Path, Path]:
    q, a = tmp / "questions.jsonl", tmp / "answers.jsonl"
    q.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in QUESTIONS))
    a.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ANSWERS))
    return q, a


def judge(double) -> ScoreOptions:
    return ScoreOptions(judge={"model": "judge-double", "base_urls": [double.base_url],
                               "max_retries": 0})


def test_grades_times_ten_per_model_with_examples_and_both_languages(judge_double, tmp_path):
    eval_judge = EvalJudge()
    judge_double.responder = eval_judge
    q, a = write(tmp_path)
    out = tmp_path / "ref.json"
    result = asyncio.run(evaluate_reference(q, out, judge(judge_double),
                                            ReferenceOptions(by="model"), answers_path=a))
    assert result["groups"]["A"]["score_x10"] == pytest.approx(10 * (8 + 6) / 2)
    assert result["groups"]["B"]["score_x10"] == pytest.approx(10 * (2 + 3) / 2)
    assert result["questions"] == 2 and result["answers"] == 4
    assert result["rejected"] == 2 and result["exit_code"] == 1  # q3's example, c1's q9
    rejected = (tmp_path / "ref.json.rejected.jsonl").read_text()
    assert "examples[0]" in rejected and "q9" in rejected
    sent = [r["body"] for r in judge_double.requests if r["body"].get("response_format")]
    users = [b["messages"][-1]["content"] for b in sent]
    q1 = next(u for u in users if "How large" in u)
    assert "graded 7" in q1 and "About 40 tonnes." in block(q1, "graded_examples")
    assert "twice the year before" in block(q1, "reference_answer")
    q2 = next(u for u in users if "今年" in u)
    assert "本题没有评分示例" in q2
    systems = eval_judge.systems["ReferenceReply"]
    assert any("参考答案" in s for s in systems) and any("reference answer" in s for s in systems)

    before = judge_double.count()
    again = asyncio.run(evaluate_reference(q, out, judge(judge_double),
                                           ReferenceOptions(by="model"), answers_path=a))
    assert judge_double.count() == before and again["groups"] == result["groups"]
    assert again["cost"]["cache_hits"] == 4


def test_answers_generated_through_the_sample_stage(judge_double, tmp_path):
    judge_double.responder = EvalJudge()
    q, _ = write(tmp_path)
    out = tmp_path / "gen.json"
    sample = SampleOptions(policy={"provider": "dry_run"}, n=1, temperature=0.0)
    result = asyncio.run(evaluate_reference(q, out, judge(judge_double), sample_options=sample))
    assert result["sampled"]["candidates_written"] == 3  # q3 is a good prompt for sampling
    # q3's answer names a question that was rejected, so it is not graded
    assert result["answers"] == 2 and result["groups"]["all"]["score_x10"] == 60
    assert (tmp_path / "gen.json.run" / "answers.jsonl").exists()


def test_cli_reference_with_dry_run_judge_and_policy(tmp_path):
    q, a = write(tmp_path)
    out = tmp_path / "cli.json"
    base = [sys.executable, "-m", "longreward", "eval", "reference", str(q), "-o", str(out),
            "--dry-run"]
    r = subprocess.run([*base, "--answers", str(a), "--by", "model"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1, r.stderr  # rejected records
    assert "DRY RUN" in r.stderr and "score (×10)" in r.stderr and "rejected" in r.stderr
    assert set(json.loads(out.read_text())["groups"]) == {"A", "B"}
    r = subprocess.run([*base, "--policy-dry-run", "-o", str(tmp_path / "gen.json"),
                        "--no-progress"], capture_output=True, text=True, timeout=120)
    assert json.loads((tmp_path / "gen.json").read_text())["answers"] == 2, r.stderr
    r = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--answers" in r.stderr
