"""Batch mode against the judge double's Batch API (through the openai SDK) and in file mode:
the rounds follow the reward's dependencies, the rows equal an online run's, the cache is
shared between modes, and failed, expired and missing lines are sent again."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

from batch_executor import (
    api_run,
    assert_same_rows,
    execute_shard,
    judge_bodies,
    options,
    rows,
    score,
    score_files_mode,
    write_input,
)
from longreward.io.files import default_run_dir
from longreward.judge.batch import BatchOptions, BatchPending, BatchRun, ingest_results


def _online(double, tmp: Path, inp: Path, **judge) -> tuple[Path, list[str]]:
    out = tmp / "online.jsonl"
    summary = score(inp, out, options(double, **judge))
    assert summary.exit_code == 0
    bodies = judge_bodies(double)
    double.reset()
    return out, bodies


def test_batch_api_rounds_follow_the_reward_and_rows_equal_online(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=2, n_cands=3)
    online, online_bodies = _online(judge_double, tmp_path, inp)

    out = tmp_path / "batch.jsonl"
    run = api_run()
    summary = score(inp, out, options(judge_double), run)
    assert summary.exit_code == 0 and summary.answers_scored == 6
    assert_same_rows(online, out)
    # The same requests, byte for byte, only as batch lines.
    assert judge_bodies(judge_double) == online_bodies
    assert all(r.get("batch") for r in judge_double.requests)
    # Round 1: helpfulness, logicality, statements per answer + one extraction per chunk of
    # each prompt's document; round 2: grading and coverage.
    n_chunks = sum(len(row["details"]["completeness"]["points"])
                   for row in rows(online).values() if row["id"].endswith("-0"))
    assert [r["round"] for r in run.rounds] == [1, 2]
    assert run.rounds[0]["requests"] == 6 * 3 + n_chunks
    assert sum(r["requests"] for r in run.rounds) == len(online_bodies)
    events = [e for e, _ in judge_double.batch_log]
    assert events.count("upload") == 2 and events.count("create") == 2

    # The call cache is shared: rescoring online in the batch run's directory sends nothing.
    judge_double.reset()
    again = score(inp, tmp_path / "online-again.jsonl", options(judge_double),
                  run_dir=default_run_dir(out), redo="all")
    assert judge_double.count("/chat/completions") == 0
    assert again.answers_scored == 6 and again.stats["cache_hits"] == len(online_bodies)


def test_online_calls_are_reused_by_batch_mode(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=2)
    online, _ = _online(judge_double, tmp_path, inp)
    # Same run directory: every call is cached, so no round is sent at all.
    out = tmp_path / "online.jsonl"
    out.unlink()
    run = api_run()
    assert score(inp, out, options(judge_double), run).exit_code == 0
    assert run.rounds == [] and judge_double.batch_log == []


def test_file_mode_rows_equal_online_results_in_any_order(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=2, n_cands=2)
    online, online_bodies = _online(judge_double, tmp_path, inp)

    out = tmp_path / "files.jsonl"
    summary, n_rounds = score_files_mode(inp, out, options(judge_double), judge_double,
                                         tmp_path / "results", max_requests=5)
    assert n_rounds == 2 and summary.exit_code == 0
    assert_same_rows(online, out)
    assert judge_bodies(judge_double) == online_bodies
    shards = sorted((default_run_dir(out) / "rounds").rglob("part-*.jsonl"))
    assert len(shards) >= 4  # split at 5 requests a shard
    for shard in shards:
        lines = [json.loads(x) for x in shard.read_text().splitlines()]
        assert 1 <= len(lines) <= 5
        assert {tuple(sorted(x)) for x in lines} == {("body", "custom_id", "method", "url")}


def test_ingest_reads_any_order_twice_and_reports_missing_unknown_and_bad_lines(
        judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=2)
    out = tmp_path / "files.jsonl"
    run_dir = default_run_dir(out)
    opts = options(judge_double)
    try:
        score(inp, out, opts, BatchRun(BatchOptions(mode="files", max_requests=3), "score"))
        raise AssertionError("file mode must stop after writing round 1")
    except BatchPending as exc:
        pending = exc
    assert pending.round_no == 1 and len(pending.shards) >= 2
    assert "vllm run-batch -i" in str(pending) and "longreward batch ingest" in str(pending)
    # Execute the shards in reverse order into two different places, leave the last one out.
    results = [tmp_path / "a", tmp_path / "b" / "deep"]
    for d in results:
        d.mkdir(parents=True)
    shards = [Path(s) for s in pending.shards]
    for i, shard in enumerate(reversed(shards[1:])):
        execute_shard(shard, judge_double.base_url, results[i % 2] / f"r{i}.jsonl")
    (results[0] / "junk.jsonl").write_text('{"custom_id": "r9-nope", "response": '
                                           '{"status_code": 200, "body": {}}}\nnot json\n')
    report = ingest_results(run_dir, [tmp_path / "b", results[0]])
    n_missing = len(shards[0].read_text().splitlines())
    assert report.unknown == ["r9-nope"] and len(report.unreadable) == 1
    assert "junk.jsonl:2" in report.unreadable[0]
    assert report.missing() == n_missing
    again = ingest_results(run_dir, [tmp_path / "b", results[0]])
    assert again.new == 0 and again.repeated == report.new
    first = [json.loads(x) for x in shards[0].read_text().splitlines()]

    def contents(lines):
        return {json.dumps(x["body"], sort_keys=True) for x in lines}

    # The next run goes on with what came back (round 2: the answers whose round-1 calls
    # are all answered) and waits for the missing lines instead of sending them again ...
    try:
        score(inp, out, opts, BatchRun(BatchOptions(mode="files", max_requests=3), "score"))
        raise AssertionError("missing lines must be awaited")
    except BatchPending as exc:
        assert exc.waiting == n_missing and exc.round_no == 2
        assert str(shards[0]) in str(exc) and "--reissue-missing" in str(exc)
        round2 = [json.loads(x) for s in exc.shards for x in Path(s).read_text().splitlines()]
    assert not contents(round2) & contents(first)
    # ... or, asked to, sends every request still without a result again, in a new round.
    try:
        score(inp, out, opts, BatchRun(BatchOptions(mode="files", max_requests=3,
                                                    reissue_missing=True), "score"))
        raise AssertionError("a new round must be written")
    except BatchPending as exc:
        assert exc.round_no == 3
        reissued = [json.loads(x) for s in exc.shards for x in Path(s).read_text().splitlines()]
    assert contents(reissued) == contents(first) | contents(round2)
    assert {x["custom_id"][:3] for x in reissued} == {"r3-"}


def test_unparsable_replies_are_reasked_in_a_further_round(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=2)

    def responder(body):
        # the first helpfulness attempt (T=0) of every answer is unreadable
        if "ScoredReply" in json.dumps(body.get("response_format")) and body["temperature"] == 0:
            return "I would rather not say."
        return None

    judge_double.responder = responder
    online, _ = _online(judge_double, tmp_path, inp)
    judge_double.responder = responder
    out = tmp_path / "batch.jsonl"
    run = api_run()
    assert score(inp, out, options(judge_double), run).exit_code == 0
    assert_same_rows(online, out)
    # the re-asks go out with round 2 (grading and coverage): no round of their own
    assert [r["round"] for r in run.rounds] == [1, 2]
    assert all(r["details"]["helpfulness"]["usage"]["calls"] == 2 for r in rows(out).values())


def test_expired_and_failed_batches_send_the_rest_again(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=2)
    online, online_bodies = _online(judge_double, tmp_path, inp)

    judge_double.batch_expire_after = 4  # the first batch expires after 4 lines
    out = tmp_path / "expired.jsonl"
    run = api_run()
    assert score(inp, out, options(judge_double), run).exit_code == 0
    assert_same_rows(online, out)
    first = run.rounds[0]
    assert first["statuses"] == {"expired": 1} and first["failed_lines"] == first["requests"] - 4
    assert run.rounds[1]["requests"] >= first["failed_lines"]  # re-issued with round 2
    # every request was answered once: the 4 done before expiry are not sent again
    assert judge_bodies(judge_double) == online_bodies

    judge_double.reset()
    judge_double.batch_fail = ("server_error", "the batch could not be processed", 3)
    out = tmp_path / "failed.jsonl"
    run = api_run()
    assert score(inp, out, options(judge_double), run).exit_code == 0
    assert_same_rows(online, out)
    assert run.rounds[0]["statuses"] == {"failed": 1}
    assert judge_bodies(judge_double) == online_bodies


def test_error_file_lines_retry_or_end_unscored_with_the_reason(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=2)
    judge_double.queue_faults("500")  # one line fails with a server error, then succeeds
    judge_double.batch_line_error = lambda body: (
        (400, "Invalid 'messages': logicality is not allowed here")
        if "LogicReply" in json.dumps(body.get("response_format")) else None)
    out = tmp_path / "batch.jsonl"
    run = api_run()
    summary = score(inp, out, options(judge_double), run)
    # the other dimensions are scored, but a dimension the judge's endpoint left unscored
    # makes the reward unknown (issue 14: never a mean over fewer), so the exit code says so
    assert summary.exit_code == 1 and summary.no_reward == 2
    for row in rows(out).values():
        assert row["scores"]["logicality"] is None and row["reward"] is None
        assert "logicality is not allowed here" in row["unscored"]["logicality"]
        assert "permanent error" in row["unscored"]["logicality"]
        assert all(row["scores"][d] is not None for d in ("helpfulness", "faithfulness",
                                                           "completeness"))
    assert run.rounds[0]["failed_lines"] == 3  # 2 logicality + the 500
    # the 500 was sent again (round 2) and answered; the 400s were not
    bodies = judge_bodies(judge_double)
    assert len(bodies) - len(set(bodies)) == 1


def test_lines_missing_from_a_completed_batch_are_sent_again(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=1)
    dropped: list[str] = []

    def drop(body):
        text = json.dumps(body, sort_keys=True)
        if "StatementsReply" in text and not dropped:
            dropped.append(text)
            return True
        return False

    judge_double.batch_drop = drop
    run = api_run()
    assert score(inp, tmp_path / "b.jsonl", options(judge_double), run).exit_code == 0
    assert dropped and run.rounds[0]["failed_lines"] == 1
    assert judge_bodies(judge_double).count(dropped[0]) == 2


def test_rounds_split_at_the_request_and_byte_limits(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=2, n_cands=2)
    run = api_run(max_requests=3, max_bytes=20_000)
    assert score(inp, tmp_path / "b.jsonl", options(judge_double), run).exit_code == 0
    for bid in (b for r in run.rounds for b in r["batches"]):
        data = judge_double.files[judge_double.batches[bid]["input_file_id"]]["content"]
        assert len(data.splitlines()) <= 3 and len(data) <= 20_000
    assert len(run.rounds[0]["batches"]) >= 5


def test_progress_shows_each_rounds_batch_status_and_counts(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=2)
    judge_double.batch_hold = True
    run = api_run()
    seen: list[str] = []
    result: list = []
    worker = threading.Thread(target=lambda: result.append(
        score(inp, tmp_path / "b.jsonl", options(judge_double), run)))
    worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any("in_progress" in s for s in seen):
        if run.client is not None:
            seen += run.snapshot()["notices"]
        time.sleep(0.02)
    judge_double.batch_hold = False
    worker.join(60)
    assert result and result[0].exit_code == 0
    line = next(s for s in seen if "in_progress" in s)
    assert line.startswith("batch round 1: 1 in_progress") and "/" in line and "done" in line


def test_cost_is_estimated_at_batch_prices(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=2)
    price = {"input_per_mtok": 2.0, "output_per_mtok": 8.0, "batch_discount": 0.5}
    online = score(inp, tmp_path / "o.jsonl", options(judge_double, prices=price)).stats
    judge_double.reset()
    batch = score(inp, tmp_path / "b.jsonl", options(judge_double, prices=price), api_run()).stats
    judged = {t: s for t, s in online["by_tag"].items() if t != "probe"}
    assert {t: (s["prompt_tokens"], s["completion_tokens"]) for t, s in judged.items()} == {
        t: (s["prompt_tokens"], s["completion_tokens"]) for t, s in batch["by_tag"].items()}
    tokens_in = sum(s["prompt_tokens"] for s in judged.values())
    tokens_out = sum(s["completion_tokens"] for s in judged.values())
    full = (tokens_in * 2.0 + tokens_out * 8.0) / 1e6
    assert abs(batch["cost_usd"] - full / 2) < 1e-9


def test_retry_unscored_sends_failed_lines_again(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=1)
    judge_double.batch_line_error = lambda body: (
        (503, "overloaded") if "LogicReply" in json.dumps(body.get("response_format")) else None)
    out = tmp_path / "b.jsonl"
    first = score(inp, out, options(judge_double), api_run(reissues=1))
    row = rows(out)["q0-0"]
    assert first.exit_code == 1 and row["scores"]["logicality"] is None
    assert row["reward"] is None
    assert "overloaded" in row["unscored"]["logicality"]
    # Rerun as it was: the failed lines are replayed, nothing is sent.
    judge_double.batch_line_error = None
    n = len(judge_double.requests)
    again = score(inp, out, options(judge_double), api_run(reissues=1))
    assert again.answers_scored == 0 and len(judge_double.requests) == n
    # --retry-unscored: the failed calls go out again and the answer is complete.
    score(inp, out, options(judge_double), api_run(reissues=1), redo="unscored")
    assert rows(out)["q0-0"]["scores"]["logicality"] is not None
    assert rows(out)["q0-0"]["reward"] is not None


class _SlowRetriever:
    """BM25 behind a thread that takes a while (as a dense model or an embeddings API would):
    the round driver must wait for it instead of sending a round early."""

    def __init__(self) -> None:
        from longreward.retrieval import create_retriever

        self.inner = create_retriever("bm25")

    async def build(self, chunks):
        await asyncio.to_thread(time.sleep, 0.2)
        return _SlowIndex(await self.inner.build(chunks))


class _SlowIndex:
    def __init__(self, inner) -> None:
        self.inner = inner

    async def search(self, queries, k):
        await asyncio.to_thread(time.sleep, 0.1)
        return await self.inner.search(queries, k)


def test_retrieval_in_a_thread_is_waited_for_not_mistaken_for_quiet(judge_double, tmp_path):
    from longreward.reward.scorer import LongReward

    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=2)
    online, _ = _online(judge_double, tmp_path, inp)
    run = api_run()
    opts = options(judge_double)
    scorer = LongReward(run.make_client(opts.judge), options=opts, retriever=_SlowRetriever())
    out = tmp_path / "slow.jsonl"
    summary = score(inp, out, opts, run, scorer=scorer)
    assert summary.exit_code == 0
    assert_same_rows(online, out)
    assert [r["round"] for r in run.rounds] == [1, 2]  # no round sent while retrieval ran


def test_a_call_waiting_for_its_batch_is_not_reported_as_a_stalled_judge(
        judge_double, tmp_path, monkeypatch, caplog):
    from longreward.judge import _transport

    monkeypatch.setattr(_transport, "STALL_S", 0.05)  # online: "no reply for 45 s"
    monkeypatch.setattr(_transport, "STALL_CHECK_S", 0.05)
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=1)
    judge_double.batch_line_delay = 0.1  # round 1 takes about a second
    run = api_run()
    seen: list[str] = []

    def watch():
        while not done:
            if run.client is not None:
                seen.extend(run.client.stats.notices.values())
            time.sleep(0.02)

    done = False
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert score(inp, tmp_path / "b.jsonl", options(judge_double), run).exit_code == 0
    finally:
        done = True
        watcher.join()
    assert any(s.startswith("batch round 1") for s in seen)
    assert not [s for s in seen if "no reply" in s or "not answering" in s]
    assert "no reply from" not in caplog.text
