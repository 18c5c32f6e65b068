"""Regression tests for the stage runner, the one input path and the CLI error boundary.

Each test names the 0.1 bug it guards against; each failed on 0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from longreward import LongReward, ScoreOptions
from longreward.stages.runner import StageSpec, Unit, fingerprint, run_stage

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "src" / "longreward" / "examples"


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def cli(*args: str, timeout: float = 180, **kw: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "longreward", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)


def flat(text: str) -> str:
    return " ".join(text.split())


DOC = ("The lighthouse keeper logged 212 storms in 1911. Supplies came by boat every "
       "fortnight. The lamp was converted to electricity in 1926. ") * 4


def prompts_rows(n: int = 2, **fields: str) -> list[dict[str, Any]]:
    f = {"id": "id", "context": "context", "query": "query", **fields}
    return [{f["id"]: f"p{i}", f["context"]: f"{DOC} Prompt {i}.", f["query"]: f"Question {i}?"}
            for i in range(n)]


# --------------------------------------------------------------------------- bug 1


def test_bundled_example_score_then_pairs_gives_pairs_with_no_extra_flag(tmp_path: Path) -> None:
    scored, pairs = tmp_path / "out" / "scored.jsonl", tmp_path / "out" / "pairs.jsonl"
    r = cli("score", str(EXAMPLES / "candidates.jsonl"), "-o", str(scored), "--dry-run",
            "--no-progress")
    assert r.returncode == 0, r.stderr
    assert all("context" not in row for row in read_jsonl(scored))  # rows name it by hash
    r = cli("pairs", str(scored), "-o", str(pairs))
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(pairs)
    assert len(rows) == 3  # one pair per bundled prompt
    # the document came back from the score run's store, in full
    first = json.loads((EXAMPLES / "prompts.jsonl").read_text().splitlines()[0])
    prompt_text = json.dumps(rows, ensure_ascii=False)
    assert first["context"][-200:].replace("\n", "\\n")[:80] in prompt_text


def test_sample_score_pairs_chain_with_defaults(tmp_path: Path) -> None:
    prompts = write_jsonl(tmp_path / "prompts.jsonl", prompts_rows(2))
    c, s, p = tmp_path / "c.jsonl", tmp_path / "s.jsonl", tmp_path / "p.jsonl"
    assert cli("sample", str(prompts), "-o", str(c), "--dry-run", "--no-progress").returncode == 0
    assert cli("score", str(c), "-o", str(s), "--dry-run", "--no-progress").returncode == 0
    r = cli("pairs", str(s), "-o", str(p))
    assert r.returncode == 0, r.stderr
    assert len(read_jsonl(p)) == 2


def test_zero_pairs_for_a_fixable_reason_exits_non_zero_with_the_fix(tmp_path: Path) -> None:
    prompts = write_jsonl(tmp_path / "prompts.jsonl", prompts_rows(2))
    c, s, p = tmp_path / "c.jsonl", tmp_path / "s.jsonl", tmp_path / "p.jsonl"
    assert cli("sample", str(prompts), "-o", str(c), "--dry-run", "-n", "3",
               "--no-progress").returncode == 0
    assert cli("score", str(c), "-o", str(s), "--dry-run", "--no-progress").returncode == 0
    r = cli("pairs", str(s), "-o", str(p))
    assert r.returncode == 1
    assert "--min-candidates" in flat(r.stderr) and "0 pairs" in flat(r.stderr)
    # documents nowhere to be found: says where to point it
    moved = tmp_path / "elsewhere.jsonl"
    moved.write_text(s.read_text())
    r = cli("pairs", str(moved), "-o", str(p), "--min-candidates", "2")
    assert r.returncode == 1 and "--prompts" in flat(r.stderr)
    r = cli("pairs", str(moved), "-o", str(p), "--min-candidates", "2", "--run-dir",
            str(tmp_path / "s.jsonl.run"))
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- bug 2


def test_run_with_renamed_fields_under_sample_scores_every_candidate(tmp_path: Path) -> None:
    from longreward.stages.run import load_run_config, run_pipeline

    write_jsonl(tmp_path / "prompts.jsonl", prompts_rows(2, id="pid", context="document"))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "prompts: prompts.jsonl\nrun_dir: run\n"
        "sample:\n  policy: {provider: dry_run}\n  n: 5\n  field_id: pid\n"
        "  field_context: document\n"
        "score:\n  judge: {provider: dry_run}\n")
    with pytest.warns(DeprecationWarning):
        config = load_run_config(cfg)
    summary = asyncio.run(run_pipeline(config))
    assert summary.sample.candidates == 10 and not summary.sample.errors
    assert summary.score.answers_scored == 10 and not summary.score.rejected
    assert summary.pairs.pairs == 2 and summary.exit_code == 0
    # the same with the one map given at the top level
    cfg.write_text(cfg.read_text().replace("  field_id: pid\n  field_context: document\n", "")
                   .replace("run_dir: run\n", "run_dir: run2\nfields: {id: pid, context: document}\n"))
    summary = asyncio.run(run_pipeline(load_run_config(cfg)))
    assert summary.score.answers_scored == 10 and summary.pairs.pairs == 2


# --------------------------------------------------------------------------- bug 3


def test_a_repeated_prompt_id_is_rejected_by_sample_and_score_alike(tmp_path: Path) -> None:
    rows = prompts_rows(2)
    rows.append({"id": "p0", "context": "A different document.", "query": "Question 0?"})
    prompts = write_jsonl(tmp_path / "prompts.jsonl", rows)
    c = tmp_path / "c.jsonl"
    r = cli("sample", str(prompts), "-o", str(c), "--dry-run", "--no-progress", "--no-context")
    assert r.returncode == 1
    assert {row["prompt_id"] for row in read_jsonl(c)} == {"p1"}
    rejected = read_jsonl(tmp_path / "c.jsonl.rejected.jsonl")
    assert len(rejected) == 2 and all("p0" in e["error"] for e in rejected)
    # a candidate of p0 sampled earlier from the first row, joined now: no document to use
    cand = {"id": "p0-0", "prompt_id": "p0", "query": "Question 0?", "response": "It was 1911."}
    cands = write_jsonl(tmp_path / "old.jsonl", [cand])
    r = cli("score", str(cands), "-o", str(tmp_path / "s.jsonl"), "--dry-run", "--no-progress",
            "--prompts", str(prompts))
    assert r.returncode == 1 and not read_jsonl(tmp_path / "s.jsonl")
    (why,) = read_jsonl(tmp_path / "s.jsonl.rejected.jsonl")
    assert "was rejected in the prompts file" in why["error"]
    assert "different documents or questions" in why["error"]


def test_a_candidate_joined_to_another_document_than_it_was_sampled_from_is_rejected(
        tmp_path: Path) -> None:
    prompts = write_jsonl(tmp_path / "prompts.jsonl", prompts_rows(1))
    c = tmp_path / "c.jsonl"
    assert cli("sample", str(prompts), "-o", str(c), "--dry-run", "--no-progress", "-n", "2",
               "--no-context").returncode == 0
    edited = prompts_rows(1)
    edited[0]["context"] += " An edit made after sampling."
    write_jsonl(prompts, edited)
    s = tmp_path / "s.jsonl"
    r = cli("score", str(c), "-o", str(s), "--dry-run", "--no-progress", "--prompts", str(prompts))
    assert r.returncode == 1 and not read_jsonl(s)
    errors = read_jsonl(tmp_path / "s.jsonl.rejected.jsonl")
    assert len(errors) == 2 and all(e["field"] == "document" for e in errors)


# --------------------------------------------------------------------------- bug 4


def test_a_second_process_on_the_same_run_directory_stops_at_once(judge_double: Any,
                                                                   tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [
        {"id": f"a{i}", "prompt_id": "p", "context": DOC, "query": "When?",
         "response": f"In 19{i:02d}."} for i in range(3)])
    out = tmp_path / "out.jsonl"
    judge_double.hold = True  # the first run cannot finish before the second has tried
    secret = "Xsecret-header-value-123="  # a base64-style tail: split at the ':' first
    args = ["score", str(inp), "-o", str(out), "--base-url", judge_double.base_url, "--model",
            "judge-double", "--no-progress", "--header", f"X-Token: {secret}"]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    first = subprocess.Popen([sys.executable, "-m", "longreward", *args], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = tmp_path / "out.jsonl.run" / "lock"
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text()):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.1)
        t0 = time.monotonic()
        second = cli(*args, timeout=60)
        assert second.returncode == 2
        message = flat(second.stderr)
        assert "in use by process" in message and str(first.pid) in message
        assert time.monotonic() - t0 < 30  # it did not wait for the first to finish
        # the holder's command line is shown and stored without the header's value
        assert "X-Token=***" in message and secret not in message
        assert secret not in lock.read_text()
    finally:
        judge_double.hold = False
        first.communicate(timeout=120)
    assert first.returncode == 0
    ids = [r["id"] for r in read_jsonl(out)]
    assert sorted(ids) == ["a0", "a1", "a2"]  # each row once


def test_a_second_process_on_the_same_output_with_another_run_dir_stops_too(
        judge_double: Any, tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [
        {"id": f"a{i}", "prompt_id": "p", "context": DOC, "query": "When?",
         "response": f"In 19{i:02d}."} for i in range(2)])
    out = tmp_path / "out.jsonl"
    judge_double.hold = True
    args = ["score", str(inp), "-o", str(out), "--base-url", judge_double.base_url, "--model",
            "judge-double", "--no-progress", "--dimensions", "helpfulness"]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    first = subprocess.Popen([sys.executable, "-m", "longreward", *args, "--run-dir",
                              str(tmp_path / "run1")], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        from longreward.store import OutputLock

        lock = OutputLock(out).path  # in the temp directory, keyed by the output's path
        deadline = time.monotonic() + 60
        while not (lock.exists() and str(first.pid) in lock.read_text()):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.1)
        second = cli(*args, "--run-dir", str(tmp_path / "run2"), timeout=60)
        assert second.returncode == 2, second.stderr
        message = flat(second.stderr)
        assert f"the output {out.resolve()} is in use by process {first.pid}" in message
    finally:
        judge_double.hold = False
        first.communicate(timeout=120)
    assert first.returncode == 0
    assert sorted(r["id"] for r in read_jsonl(out)) == ["a0", "a1"]


def test_pairs_reads_alongside_other_readers_but_not_while_score_still_writes(
        tmp_path: Path) -> None:
    import fcntl

    from longreward.store import OutputLock

    scored = tmp_path / "scored.jsonl"
    cands = resources.files("longreward").joinpath("examples", "candidates.jsonl")
    assert cli("score", str(cands), "-o", str(scored), "--dry-run",
               "--no-progress").returncode == 0
    lock = OutputLock(scored).path
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH)  # another reader (a second `pairs`)
        fh.truncate(0)
        fh.write(json.dumps({"pid": 4242, "host": "h", "command": "longreward pairs",
                             "started": 0, "mode": "reading"}))
        fh.flush()
        # a score run on the file being read is told so, naming the reader
        r = cli("score", str(cands), "-o", str(scored), "--dry-run", "--no-progress",
                "--restart")
        assert r.returncode == 2 and "process 4242" in flat(r.stderr)
        assert "It is being read" in flat(r.stderr)
        r = cli("pairs", str(scored), "-o", str(tmp_path / "p1.jsonl"), "--min-candidates", "2")
        assert r.returncode == 0, r.stderr
        fcntl.flock(fh, fcntl.LOCK_EX)  # a score run still writing it
        r = cli("pairs", str(scored), "-o", str(tmp_path / "p2.jsonl"), "--min-candidates", "2")
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert "still being written" in flat(r.stderr) and str(scored.resolve()) in flat(r.stderr)
        assert not (tmp_path / "p2.jsonl").exists()


def test_a_rerun_repairs_an_output_that_holds_rows_twice(tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [
        {"id": f"a{i}", "prompt_id": "p", "context": DOC, "query": "When?",
         "response": f"In 19{i:02d}."} for i in range(2)])
    out = tmp_path / "out.jsonl"
    assert cli("score", str(inp), "-o", str(out), "--dry-run", "--no-progress").returncode == 0
    out.write_text(out.read_text() * 2)  # what two unlocked writers left behind in 0.1
    assert cli("score", str(inp), "-o", str(out), "--dry-run", "--no-progress").returncode == 0
    assert sorted(r["id"] for r in read_jsonl(out)) == ["a0", "a1"]


# --------------------------------------------------------------------------- bug 5


def test_an_unpaired_surrogate_is_a_rejected_record_in_score_and_sample(tmp_path: Path) -> None:
    good = {"id": "a0", "prompt_id": "p", "context": DOC, "query": "When?", "response": "1911."}
    bad = '{"id": "a1", "prompt_id": "p", "context": "x", "query": "When?", "response": "\\ud83d"}'
    inp = write_jsonl(tmp_path / "in.jsonl", [good, bad])
    out = tmp_path / "out.jsonl"
    for _ in range(2):  # and again on the rerun
        r = cli("score", str(inp), "-o", str(out), "--dry-run", "--no-progress")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert [row["id"] for row in read_jsonl(out)] == ["a0"]
        (err,) = read_jsonl(tmp_path / "out.jsonl.rejected.jsonl")
        assert err["field"] == "response" and "surrogate" in err["error"]
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [
        {"id": "p0", "context": DOC, "query": "Q?"},
        '{"id": "p1", "context": "\\udc00 broken", "query": "Q?"}'])
    r = cli("sample", str(prompts), "-o", str(tmp_path / "c.jsonl"), "--dry-run", "--no-progress")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert {row["prompt_id"] for row in read_jsonl(tmp_path / "c.jsonl")} == {"p0"}


def test_a_model_reply_with_an_unpaired_surrogate_is_written_not_crashed_on(tmp_path: Path) -> None:
    from longreward.io.files import ResumableJsonlWriter
    from longreward.store import RunStore

    row = {"id": "x", "response": "half an emoji: \ud83d"}
    with RunStore(tmp_path / "run") as store:
        store.record("score", "x", row)
        assert store.get_row("score", "x")["response"] == "half an emoji: \ufffd"
    with ResumableJsonlWriter(tmp_path / "o.jsonl") as w:
        w.write(row)
    assert read_jsonl(tmp_path / "o.jsonl")[0]["response"].endswith("\ufffd")


# --------------------------------------------------------------------------- bug 6


def test_a_bom_loses_no_record(tmp_path: Path) -> None:
    from longreward.io.files import iter_rows

    rows = [{"id": "a", "v": 1}, {"id": "b", "v": 2}]
    jl = tmp_path / "x.jsonl"
    jl.write_bytes(b"\xef\xbb\xbf" + "\n".join(json.dumps(r) for r in rows).encode() + b"\n")
    js = tmp_path / "x.json"
    js.write_bytes(b"\xef\xbb\xbf" + json.dumps(rows).encode())
    for path in (jl, js):
        assert [item for _, item in iter_rows(path)] == rows


@pytest.mark.parametrize("content", [b"", b"PAR1 not really parquet PAR1"])
def test_a_broken_parquet_file_is_a_named_error_in_score_and_pairs(tmp_path: Path,
                                                                   content: bytes) -> None:
    bad = tmp_path / "in.parquet"
    bad.write_bytes(content)
    for command in ("score", "pairs"):
        extra = ["--dry-run", "--no-progress"] if command == "score" else []
        r = cli(command, str(bad), "-o", str(tmp_path / f"{command}.jsonl"), *extra)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr and "in.parquet" in flat(r.stderr)
        assert "cannot read Parquet" in flat(r.stderr)


def test_a_broken_yaml_config_names_the_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "score.yaml"
    cfg.write_text("judge:\n  provider: dry_run\n   model: x\n")
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "context": DOC, "query": "Q?",
                                               "response": "R."}])
    r = cli("score", str(inp), "-o", str(tmp_path / "o.jsonl"), "--config", str(cfg))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "score.yaml" in flat(r.stderr) and "line 3" in flat(r.stderr)
    r = cli("run", str(cfg))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "line 3" in flat(r.stderr)


def test_empty_or_blank_ids_are_rejected(tmp_path: Path) -> None:
    rows = [{"id": "", "context": DOC, "query": "Q?", "response": "R."},
            {"id": "  ", "context": DOC, "query": "Q?", "response": "R."},
            {"id": "ok", "context": DOC, "query": "Q?", "response": "R."}]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    r = cli("score", str(inp), "-o", str(tmp_path / "o.jsonl"), "--dry-run", "--no-progress")
    assert r.returncode == 1
    assert [row["id"] for row in read_jsonl(tmp_path / "o.jsonl")] == ["ok"]
    assert len(read_jsonl(tmp_path / "o.jsonl.rejected.jsonl")) == 2
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": " ", "context": DOC, "query": "Q?"},
                                                 {"id": "p", "context": DOC, "query": "Q?"}])
    r = cli("sample", str(prompts), "-o", str(tmp_path / "c.jsonl"), "--dry-run", "--no-progress")
    assert r.returncode == 1
    assert {row["prompt_id"] for row in read_jsonl(tmp_path / "c.jsonl")} == {"p"}


def test_blank_ids_inside_a_record_are_rejected_not_replaced() -> None:
    """A blank prompt_id of a flat row, or a blank id of a grouped candidate, is an error
    naming the field: a made-up id in its place would split a prompt's answers apart."""
    from longreward.errors import RecordError
    from longreward.io.records import group_records

    rows = [("r1", {"id": "a1", "prompt_id": "p", "context": DOC, "query": "Q?",
                    "response": "R1."}),
            ("r2", {"id": "a2", "prompt_id": "  ", "context": DOC, "query": "Q?",
                    "response": "R2."}),
            ("r3", {"id": "a3", "prompt_id": None, "context": DOC, "query": "Q?",
                    "response": "R3."}),  # null: absent, so an id from the content
            ("r4", {"id": "g", "context": DOC, "query": "Q?",
                    "candidates": [{"id": "\t", "response": "C0."}, {"response": "C1."},
                                   {"id": "c2", "response": "C2."}]}),
            ("r5", {"id": " ", "prompt_id": "h", "context": DOC, "query": "Q?",
                    "candidates": ["C."]})]
    out = list(group_records(rows))
    errors = [str(e) for e in out if isinstance(e, RecordError)]
    assert errors == ["record r2, field 'prompt_id': empty or not a string/integer id",
                      "record r4, field 'candidates[0].id': empty or not a string/integer id",
                      "record r5, field 'id': empty or not a string/integer id"]
    kept = {rec.prompt_id: [c.id for c in rec.candidates] for rec in out
            if not isinstance(rec, RecordError)}
    assert kept["p"] == ["a1"] and kept["g"] == ["g-1", "c2"]
    assert [ids for pid, ids in kept.items() if pid.startswith("p-")] == [["a3"]]


# --------------------------------------------------------------------------- bug 7


def test_a_bad_prompt_template_is_an_option_error(tmp_path: Path) -> None:
    scored = write_jsonl(tmp_path / "s.jsonl", [])
    r = cli("pairs", str(scored), "-o", str(tmp_path / "p.jsonl"), "--prompt-template",
            "Doc: $document")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "$document" in flat(r.stderr) and "$context" in flat(r.stderr)


# --------------------------------------------------------------------------- bug 8


def test_an_internal_error_in_a_dimension_is_logged_counted_and_fails_the_exit_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from longreward.reward.dimensions import faithfulness
    from longreward.stages.score import score_file

    async def broken(*_a: Any, **_k: Any) -> Any:
        raise TypeError("a bug in grading")

    # a programming error deep inside faithfulness (one statement's grading) is not turned
    # into "this statement could not be graded"
    monkeypatch.setattr(faithfulness, "_grade", broken)
    inp = write_jsonl(tmp_path / "in.jsonl", [
        {"id": f"a{i}", "prompt_id": "p", "context": DOC, "query": "When?",
         "response": f"The keeper logged {i} storms. The lamp was converted in 1926."}
        for i in range(2)])
    options = ScoreOptions(judge={"provider": "dry_run"})
    summary = asyncio.run(score_file(inp, tmp_path / "o.jsonl", options))
    assert summary.internal_errors == 2 and summary.exit_code == 1
    rows = read_jsonl(tmp_path / "o.jsonl")
    assert all(r["scores"]["faithfulness"] is None for r in rows)
    assert all(r["details"]["faithfulness"]["internal_error"] for r in rows)
    assert all(r["scores"]["helpfulness"] is not None for r in rows)
    assert "TypeError: a bug in grading" in caplog.text  # the traceback is in the log


def test_our_own_errors_stop_the_run_instead_of_becoming_unscored(tmp_path: Path) -> None:
    from longreward.errors import LongRewardError
    from longreward.reward.dimensions import _registry
    from longreward.stages.score import score_file

    class Fatal(LongRewardError):
        pass

    original = _registry._REGISTRY["logicality"]

    async def fatal(_inp: Any) -> Any:
        raise Fatal("the judge refuses our key")

    _registry._REGISTRY["logicality"] = original.__class__(
        "logicality", fatal, original.order, original.uses_document, original.description)
    try:
        inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "context": DOC, "query": "Q?",
                                                   "response": "R."}])
        with pytest.raises(Fatal):
            asyncio.run(score_file(inp, tmp_path / "o.jsonl",
                                   ScoreOptions(judge={"provider": "dry_run"})))
    finally:
        _registry._REGISTRY["logicality"] = original


# --------------------------------------------------------------------------- bug 9


def test_the_readme_python_example_runs_as_pasted(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    import shutil

    # the example writes out/api-scored.jsonl under the repository: start it fresh
    for leftover in (REPO / "out").glob("api-scored.jsonl*"):
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    r = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "NO_COLOR": "1"})
    assert r.returncode == 0, r.stderr
    # the synchronous and the asynchronous calls agree, faithfulness included
    assert "same rewards: True" in r.stdout


def test_sync_then_async_on_one_scorer_keeps_every_dimension(judge_double: Any) -> None:
    from longreward import Candidate, PromptRecord

    opts = ScoreOptions(judge={"model": "judge-double", "base_urls": [judge_double.base_url]})
    scorer = LongReward(options=opts)
    one = scorer.score_sync(DOC, "When?", "The lamp was converted in 1926.")
    rec = PromptRecord("p0", DOC, "When?", [Candidate("a0", "The lamp was converted in 1926.")])
    (again,) = asyncio.run(scorer.score_many([rec]))
    scorer.close()
    assert one.dimensions == again.dimensions == list(opts.dimensions)
    assert one.reward == again.reward


def test_a_scorer_whose_loop_ended_says_so(judge_double: Any) -> None:
    from longreward.errors import UsageError

    opts = ScoreOptions(judge={"model": "judge-double", "base_urls": [judge_double.base_url]})
    scorer = LongReward(options=opts)
    asyncio.run(scorer.score(DOC, "When?", "In 1926."))
    with pytest.raises(UsageError, match="asyncio.run"):
        asyncio.run(scorer.score(DOC, "When?", "In 1926."))
    with pytest.raises(UsageError, match="ended"):
        scorer.score_sync(DOC, "When?", "In 1926.")


# --------------------------------------------------------------------------- the runner


def test_runner_resumes_skips_repairs_and_redoes_stale_rows(tmp_path: Path) -> None:
    calls: list[str] = []

    async def work(unit: Unit, left: list[str], commit: Any) -> None:
        for item in left:
            calls.append(item)
            commit({"id": item, "input": unit.payload[item]})

    def units(inputs: dict[str, str]) -> list[Unit]:
        return [Unit("u", {k: fingerprint(v) for k, v in inputs.items()}, inputs)]

    spec = StageSpec("t", {"v": 1}, lambda row: fingerprint(row["input"]))
    out = tmp_path / "o.jsonl"
    o = asyncio.run(run_stage(spec, units({"a": "1", "b": "2"}), work, output_path=out))
    assert calls == ["a", "b"] and o.items_done_before == 0
    with open(out, "a") as fh:
        fh.write('{"id": "torn')  # a killed writer's last line
    calls.clear()
    o = asyncio.run(run_stage(spec, units({"a": "1", "b": "2*"}), work, output_path=out))
    assert calls == ["b"] and o.stale == ["b"] and o.items_done_before == 1
    assert [r["input"] for r in read_jsonl(out)] == ["1", "2*"]
    with pytest.raises(Exception, match="other settings"):
        asyncio.run(run_stage(StageSpec("t", {"v": 2}, spec.row_fingerprint),
                              units({"a": "1"}), work, output_path=out))


def test_runner_cancels_the_other_units_when_one_fails(tmp_path: Path) -> None:
    finished: list[str] = []

    async def work(unit: Unit, left: list[str], commit: Any) -> None:
        if unit.key == "bad":
            raise KeyError("bug")
        await asyncio.sleep(5)
        finished.append(unit.key)

    spec = StageSpec("t", {}, lambda row: "")
    us = [Unit("bad", {"x": ""}, None), Unit("slow", {"y": ""}, None)]
    t0 = time.monotonic()
    with pytest.raises(KeyError):
        asyncio.run(run_stage(spec, us, work, output_path=tmp_path / "o.jsonl", concurrency=2))
    assert not finished and time.monotonic() - t0 < 4


def test_a_train_section_in_run_yaml_validates_and_trains_on_the_runs_pairs(tmp_path: Path) -> None:
    from longreward.stages.run import load_run_config

    write_jsonl(tmp_path / "prompts.jsonl", prompts_rows(1))
    cfg = tmp_path / "run.yaml"
    cfg.write_text("prompts: prompts.jsonl\nrun_dir: run\nsample: {policy: {provider: dry_run}}\n"
                   "score: {judge: {provider: dry_run}}\n"
                   "train: {model: tiny-model, beta: 0.2, max_steps: 3}\n")
    config = load_run_config(cfg)
    assert config.train is not None and config.train.beta == 0.2
    assert config.train.pairs == str(tmp_path / "run" / "pairs.jsonl")
    assert config.train.output_dir == str(tmp_path / "run" / "train")
    cfg.write_text(cfg.read_text().replace("beta: 0.2", "betta: 0.2"))
    with pytest.raises(Exception, match="betta"):
        load_run_config(cfg)
