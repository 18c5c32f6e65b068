"""``score --batch``, ``sample --batch`` and ``longreward batch ingest | status | cancel`` as a
user runs them (typer's runner in this process, real HTTP to the judge double)."""

from __future__ import annotations

import json
import re
import threading
import time

from typer.testing import CliRunner

from batch_executor import assert_same_rows, execute_shard, options, rows, score, write_input
from longreward.cli import app
from longreward.io.files import default_run_dir

from judge_double import use_verdict_secret


def _cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    # rich wraps long lines and table cells: the text without line breaks and cell borders
    # reads a wrapped cell's phrase whole
    result.text = " ".join(re.sub("[│┃]", " ", result.output).split())
    return result


def _judge(double) -> list[str]:
    return ["--base-url", double.base_url, "--model", "judge-double", "--no-progress",
            "--timeout", "10"]


def test_score_file_mode_round_by_round_with_ingest(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=2, n_cands=2)
    online = tmp_path / "online.jsonl"
    assert score(inp, online, options(judge_double)).exit_code == 0
    judge_double.reset()

    out = tmp_path / "scored.jsonl"
    run_dir = default_run_dir(out)
    use_verdict_secret(run_dir)  # the online run's, so both send the same requests
    r = _cli("score", str(inp), "-o", str(out), *_judge(judge_double), "--batch", "files",
             "--batch-option", "max_requests=8")
    assert r.exit_code == 3, r.output
    assert "batch round 1:" in r.text and "vllm run-batch -i" in r.text
    assert f"longreward batch ingest {run_dir}" in r.text
    for n in range(1, 5):
        shards = sorted((run_dir / "rounds" / str(n)).glob("part-*.jsonl"))
        assert shards, r.output
        results = tmp_path / "res" / str(n)
        results.mkdir(parents=True)
        for shard in shards:
            execute_shard(shard, judge_double.base_url, results / shard.name)
        r = _cli("batch", "ingest", str(run_dir), str(tmp_path / "res"), "--no-progress")
        if r.exit_code != 3:
            break
        assert f"batch round {n + 1}:" in r.text
    assert r.exit_code == 0, r.output
    assert "longreward score" in r.text and "batch rounds (files mode)" in r.text
    assert_same_rows(online, out)
    status = _cli("batch", "status", str(run_dir))
    assert status.exit_code == 0 and "round 2 part 0" in status.text


def test_ingest_and_status_report_missing_lines(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=2)
    out = tmp_path / "scored.jsonl"
    run_dir = default_run_dir(out)
    r = _cli("score", str(inp), "-o", str(out), *_judge(judge_double), "--batch", "files",
             "--batch-option", "max_requests=4")
    assert r.exit_code == 3
    shards = sorted((run_dir / "rounds" / "1").glob("part-*.jsonl"))
    (tmp_path / "res").mkdir()
    execute_shard(shards[0], judge_double.base_url, tmp_path / "res" / "a.jsonl")
    r = _cli("batch", "ingest", str(run_dir), str(tmp_path / "res"), "--no-continue")
    assert r.exit_code == 3  # lines still missing
    assert "missing" in r.text and shards[1].name in r.text
    assert _cli("batch", "status", str(run_dir)).exit_code == 3
    r = _cli("batch", "ingest", str(run_dir), str(tmp_path / "res"), "--no-progress")
    assert r.exit_code == 3 and "have no result yet" in r.text
    assert shards[1].name in r.text


def test_batch_flags_are_checked(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=1)
    out = str(tmp_path / "o.jsonl")
    r = _cli("score", str(inp), "-o", out, *_judge(judge_double), "--batch", "files",
             "--batch-option", "max_requests=60000")
    assert r.exit_code == 2 and "max_requests" in r.text
    r = _cli("score", str(inp), "-o", out, *_judge(judge_double), "--batch-option",
             "poll_interval=1")
    assert r.exit_code == 2 and "--batch" in r.text
    r = _cli("score", str(inp), "-o", out, "--dry-run", "--batch", "openai")
    assert r.exit_code == 2 and "openai_compatible" in r.text
    r = _cli("batch", "ingest", str(tmp_path), str(inp))
    assert r.exit_code == 2 and "not a run directory" in r.text


def test_sample_in_batch_mode_equals_online(judge_double, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "context": f"Document {i}. " * 30,
                                           "query": f"Question {i}?"}) + "\n" for i in range(3)))
    common = ["--base-url", judge_double.base_url, "--model", "judge-double", "-n", "3",
              "--seed", "7", "--no-progress"]
    online = tmp_path / "online.jsonl"
    assert _cli("sample", str(prompts), "-o", str(online), *common).exit_code == 0
    n_online = judge_double.count("/chat/completions")
    judge_double.reset()
    out = tmp_path / "batch.jsonl"
    r = _cli("sample", str(prompts), "-o", str(out), *common, "--batch", "openai",
             "--batch-option", "poll_interval=0.02")
    assert r.exit_code == 0, r.output
    assert rows(out) == rows(online)
    assert judge_double.count("/chat/completions") == n_online == 3  # n=3 in one request
    assert [e for e, _ in judge_double.batch_log].count("create") == 1
    assert "batch round 1" in r.text


def test_sample_completion_style_in_file_mode(judge_double, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "p0", "context": "A short text.", "query": "Why?"})
                       + "\n")
    out = tmp_path / "c.jsonl"
    run_dir = default_run_dir(out)
    args = ["sample", str(prompts), "-o", str(out), "--base-url", judge_double.base_url,
            "--model", "judge-double", "-n", "2", "--style", "completion", "--no-progress",
            "--batch", "files"]
    assert _cli(*args).exit_code == 3
    shard = run_dir / "rounds" / "1" / "part-0000.jsonl"
    line = json.loads(shard.read_text())
    assert line["url"] == "/v1/completions" and line["body"]["n"] == 2
    (tmp_path / "res").mkdir()
    execute_shard(shard, judge_double.base_url, tmp_path / "res" / "r.jsonl")
    r = _cli("batch", "ingest", str(run_dir), str(tmp_path / "res"), "--no-progress")
    assert r.exit_code == 0, r.output
    assert len(rows(out)) == 2


def test_cancel_a_running_batch_then_the_run_sends_the_rest_again(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=2)
    out = tmp_path / "scored.jsonl"
    judge_double.batch_hold = True
    result: list = []
    worker = threading.Thread(target=lambda: result.append(_cli(
        "score", str(inp), "-o", str(out), *_judge(judge_double), "--batch", "openai",
        "--batch-option", "poll_interval=0.05")))
    worker.start()
    deadline = time.monotonic() + 60
    while not any(b["status"] == "in_progress" for b in list(judge_double.batches.values())):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    r = _cli("batch", "cancel", str(default_run_dir(out)))
    assert r.exit_code == 0 and "cancelled 1 batch" in r.text
    judge_double.batch_hold = False
    worker.join(60)
    assert result and result[0].exit_code == 0, result[0].output if result else None
    assert ("cancel", "batch_000002") in judge_double.batch_log
    assert "1 cancelled" in result[0].text  # round 1's status in the summary
    assert len(rows(out)) == 2 and all(r["reward"] is not None for r in rows(out).values())


def test_lines_of_another_run_are_reported(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=1)
    out = tmp_path / "scored.jsonl"
    assert _cli("score", str(inp), "-o", str(out), *_judge(judge_double), "--batch",
                "files").exit_code == 3
    stray = tmp_path / "stray.jsonl"
    stray.write_text(json.dumps({"custom_id": "r1-0000", "response": {"status_code": 200,
                                                                       "body": {}}}) + "\n")
    r = _cli("batch", "ingest", str(default_run_dir(out)), str(stray), "--no-continue")
    assert r.exit_code == 3 and "name no request of" in r.text
