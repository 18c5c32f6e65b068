"""``longreward score`` as a user runs it: subprocesses, real HTTP to the judge double,
SQLite in a temp dir."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batch_executor import doc as _doc

from judge_double import use_verdict_secret

KEY = "sk-test-SECRET-0123456789abcdef"


def write_flat(path: Path, n_prompts: int = 3, n_cands: int = 4) -> list[str]:
    ids = []
    with open(path, "w", encoding="utf-8") as fh:
        for p in range(n_prompts):
            for k in range(n_cands):
                cid = f"q{p}-{k}"
                ids.append(cid)
                fh.write(json.dumps({"id": cid, "prompt_id": f"q{p}", "context": _doc(f"t{p}"),
                                     "query": f"What did committee t{p} approve?",
                                     "response": f"It approved line {k} worth {k * 1000 + 7} "
                                                 f"coins. Answer variant {k}."}) + "\n")
    return ids


def cli(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full_env.pop("OPENAI_API_KEY", None)
    return subprocess.Popen([sys.executable, "-m", "longreward", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def run_cli(*args: str, env=None, timeout: float = 120) -> subprocess.CompletedProcess:
    p = cli(*args, env=env)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def judge_args(double, out: Path) -> list[str]:
    return ["-o", str(out), "--base-url", double.base_url, "--model", "judge-double",
            "--no-progress", "--timeout", "5"]


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sigkill_midway_then_rerun_loses_nothing_and_repeats_no_call(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    ids = write_flat(inp)
    env = {"LONGREWARD_API_KEY": KEY}
    judge_double.required_api_key = KEY

    # Reference: an uninterrupted run, counting its requests.
    ref_out = tmp_path / "ref.jsonl"
    r = run_cli("score", str(inp), *judge_args(judge_double, ref_out), env=env)
    assert r.returncode == 0, r.stderr
    n_ref = judge_double.count()
    ref_rows = {row["id"]: row for row in read_rows(ref_out)}
    assert sorted(ref_rows) == sorted(ids)

    # The verdict nonces come from a secret made once per run store: give the killed run the
    # reference run's, so that both send the same requests (the double's replies, and so the
    # number of statements to grade, are a function of the request).
    use_verdict_secret(tmp_path / "out.jsonl.run", like=tmp_path / "ref.jsonl.run")

    # Killed run: slow judge, SIGKILL once some answers are written.
    judge_double.reset()
    judge_double.required_api_key = KEY
    judge_double.delay = 0.15
    out = tmp_path / "out.jsonl"
    p = cli("score", str(inp), *judge_args(judge_double, out), "--concurrency", "2", env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if out.exists() and len(out.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    partial = read_rows(out)
    assert 3 <= len(partial) < len(ids), "kill happened too late to test resuming"
    db = tmp_path / "out.jsonl.run" / "longreward.sqlite"
    with sqlite3.connect(db) as con:
        completed_calls = con.execute("select count(*) from calls").fetchone()[0]

    # Rerun the same command: finishes, no duplicates, no completed call repeated.
    judge_double.reset()
    judge_double.required_api_key = KEY
    r = run_cli("score", str(inp), *judge_args(judge_double, out), env=env)
    assert r.returncode == 0, r.stderr
    rows = read_rows(out)
    assert len(rows) == len(ids) and sorted(x["id"] for x in rows) == sorted(ids)
    assert judge_double.count() == n_ref - completed_calls
    for row in rows:
        assert row["scores"] == ref_rows[row["id"]]["scores"]

    # The key never reaches disk.
    for f in [*tmp_path.rglob("*")]:
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    assert KEY not in r.stdout + r.stderr

    # A third run has nothing to do: no request at all.
    judge_double.reset()
    r = run_cli("score", str(inp), *judge_args(judge_double, out), env=env)
    assert r.returncode == 0 and judge_double.count() == 0
    assert len(read_rows(out)) == len(ids)


def test_bad_input_is_reported_by_record_and_the_rest_is_scored(judge_double, tmp_path):
    inp = tmp_path / "bad.jsonl"
    good = {"id": "ok-1", "context": _doc("a"), "query": "Q?", "response": "fine answer"}
    with open(inp, "wb") as fh:
        fh.write((json.dumps(good) + "\n").encode())
        fh.write(b'{"id": "broken", "context": "x"\n')  # malformed JSON
        fh.write((json.dumps({"id": "noq", "context": "doc", "response": "r"}) + "\n").encode())
        fh.write((json.dumps({"id": "empty", "context": "doc", "query": "Q", "response": "  "})
                  + "\n").encode())
        fh.write(b'{"id": "latin1", "context": "caf\xe9", "query": "Q", "response": "r"}\n')
        fh.write((json.dumps({"id": "huge", "context": _doc("b", 400), "query": "Q",
                              "response": "r"}) + "\n").encode())
        fh.write((json.dumps({**good, "id": "ok-2", "response": "another"}) + "\n").encode())
    out = tmp_path / "out.jsonl"
    r = run_cli("score", str(inp), *judge_args(judge_double, out), "--max-context-tokens", "5000")
    assert r.returncode == 1, r.stderr  # records were rejected: the exit code says so
    assert sorted(x["id"] for x in read_rows(out)) == ["ok-1", "ok-2"]
    rejected = read_rows(tmp_path / "out.jsonl.rejected.jsonl")
    by_record = {x["record"]: x for x in rejected}
    assert len(rejected) == 5
    assert any("bad.jsonl:2" in k and "malformed JSON" in v["error"] for k, v in by_record.items())
    assert any("noq" in k and v["field"] == "query" for k, v in by_record.items())
    assert any("empty" in k and v["field"] == "response" for k, v in by_record.items())
    assert any("bad.jsonl:5" in k and "UTF-8" in v["error"] for k, v in by_record.items())
    assert any("huge" in k and v["field"] == "context" and "max_document_tokens" in v["error"]
               for k, v in by_record.items())
    assert "rejected" in r.stderr and "noq" in r.stderr


def test_config_file_and_flags_map_onto_the_same_options(tmp_path):
    from longreward.cli.score import build_score_options

    cfg = tmp_path / "c.yaml"
    cfg.write_text("judge:\n  model: m1\n  base_urls: http://x/v1\n  temperature: 0.2\n"
                   "dimensions: [helpfulness, faithfulness]\nretrieval:\n  top_k: 3\n")
    opts = build_score_options(cfg, {"judge": {"model": "m2"}})
    assert opts.judge.model == "m2" and opts.judge.base_urls == ["http://x/v1"]
    assert opts.judge.temperature == 0.2 and opts.retrieval.top_k == 3
    assert opts.dimensions == ["helpfulness", "faithfulness"]
    toml = tmp_path / "c.toml"
    toml.write_text('dimensions = ["logicality"]\n[judge]\nmodel = "t"\n')
    assert build_score_options(toml, {}).dimensions == ["logicality"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("judge:\n  modle: typo\n")
    import typer

    with pytest.raises(typer.BadParameter, match="modle"):
        build_score_options(bad, {})


@pytest.mark.parametrize("dry", [["--dry-run"], ["--provider", "dryrun"]])
def test_dry_run_on_bundled_example_needs_no_network_or_key(tmp_path, dry):
    """Also under a registered alias of the dry-run provider: the banner still says the scores
    are placeholders."""
    from importlib import resources

    example = resources.files("longreward").joinpath("examples", "candidates.jsonl")
    if not example.is_file():
        pytest.skip("bundled example not present")
    out = tmp_path / "scored.jsonl"
    r = run_cli("score", str(example), "-o", str(out), *dry, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "DRY RUN" in r.stderr
    rows = read_rows(out)
    assert rows and all(set(x["scores"]) == {"helpfulness", "logicality", "faithfulness",
                                             "completeness"} for x in rows)


def test_rerun_with_other_options_is_refused_and_restart_rescores_from_the_cache(
        judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_flat(inp, n_prompts=2, n_cands=2)
    out = tmp_path / "out.jsonl"
    assert run_cli("score", str(inp), *judge_args(judge_double, out)).returncode == 0
    first = read_rows(out)
    calls = judge_double.count()
    stats = json.loads((tmp_path / "out.jsonl.run" / "summary.json").read_text())["stats"]
    by_dim = stats["by_dimension"]  # usage summed per dimension, as well as per run
    assert set(by_dim) == {"helpfulness", "logicality", "faithfulness", "completeness"}
    # every call but the endpoint's one reply-format probe belongs to a dimension
    probe = sum(c.get("prompt_tokens", 0) for tag, c in stats["by_tag"].items()
                if tag.split(".", 1)[0] not in by_dim)
    assert sum(d["prompt_tokens"] for d in by_dim.values()) == stats["prompt_tokens"] - probe > 0
    # Before: the finished rows (four dimensions) were silently kept as if scored on one.
    r = run_cli("score", str(inp), *judge_args(judge_double, out), "--dimensions", "helpfulness")
    assert r.returncode == 2
    assert "other settings" in r.stderr and "dimensions" in r.stderr and "--restart" in r.stderr
    assert read_rows(out) == first and judge_double.count() == calls
    # Load settings are not output settings: resuming with them is fine.
    r = run_cli("score", str(inp), *judge_args(judge_double, out), "--concurrency", "3")
    assert r.returncode == 0, r.stderr
    r = run_cli("score", str(inp), *judge_args(judge_double, out), "--dimensions", "helpfulness",
                "--restart")
    assert r.returncode == 0, r.stderr
    rows = read_rows(out)
    assert sorted(x["id"] for x in rows) == sorted(x["id"] for x in first)
    assert all(x["dimensions"] == ["helpfulness"] for x in rows)
    assert judge_double.count() == calls  # every helpfulness call came from the cache


def test_answers_unscored_by_a_judge_outage_are_retried_and_the_exit_code_persists(
        judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    ids = write_flat(inp, n_prompts=2, n_cands=2)
    out = tmp_path / "out.jsonl"
    judge_double.fail_with = (503, "upstream overloaded")
    args = [*judge_args(judge_double, out), "--max-retries", "0"]
    r = run_cli("score", str(inp), *args)
    assert r.returncode == 1, r.stderr
    assert all(not x["dimensions"] for x in read_rows(out))
    # A plain rerun redoes nothing, but the output still holds unscored answers: before,
    # the exit code went back to 0 and the summary showed no means.
    r = run_cli("score", str(inp), *args)
    assert r.returncode == 1, r.stderr
    judge_double.fail_with = None
    r = run_cli("score", str(inp), *args, "--retry-unscored")
    assert r.returncode == 0, r.stderr
    rows = read_rows(out)
    assert sorted(x["id"] for x in rows) == sorted(ids)  # replaced, not duplicated
    assert all(x["dimensions"] and not x["unscored"] for x in rows)
    r = run_cli("score", str(inp), *args)
    assert r.returncode == 0 and "reward mean" in r.stderr


def test_a_tokenizer_that_cannot_load_stops_the_run_at_start(tmp_path):
    inp = tmp_path / "in.jsonl"
    write_flat(inp, n_prompts=1, n_cands=1)
    out = tmp_path / "out.jsonl"
    # before: exit 0, with faithfulness and completeness unscored on every answer
    r = run_cli("score", str(inp), "-o", str(out), "--dry-run", "--no-progress",
                "--tokenizer", str(tmp_path / "no-such-tokenizer"))
    assert r.returncode == 2
    assert "Could not load the tokenizer" in r.stderr
    assert not out.exists()


def test_an_empty_input_says_so_and_exits_non_zero(tmp_path):
    inp = tmp_path / "empty.jsonl"
    inp.write_text("\n")
    r = run_cli("score", str(inp), "-o", str(tmp_path / "out.jsonl"), "--dry-run",
                "--no-progress")
    assert r.returncode == 2
    assert "holds no records" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_endpoint_without_schemas_scores_every_dimension_in_text_mode(judge_double, tmp_path):
    """An endpoint that rejects response_format: the run switches to tagged text once and
    every dimension is still scored through the text parsers (the double answers in the
    format each prompt asks for)."""
    inp = tmp_path / "in.jsonl"
    write_flat(inp, n_prompts=1, n_cands=3)
    judge_double.reject_schema = True
    out = tmp_path / "out.jsonl"
    r = run_cli("score", str(inp), *judge_args(judge_double, out), "--grade-batch-size", "4")
    assert r.returncode == 0, r.stderr
    rows = read_rows(out)
    assert len(rows) == 3
    for row in rows:
        assert row["unscored"] == {}, row["unscored"]
        assert all(v is not None for v in row["scores"].values())
    with_schema = [x for x in judge_double.requests if x["body"].get("response_format")]
    # The ladder asks each structured rung at most once (json_schema, json_object + schema,
    # json_object), then remembers text mode for the run: every scoring call is plain text.
    assert len(with_schema) <= 3
    assert len(judge_double.requests) - len(with_schema) >= 3 * 4


def test_candidates_without_context_are_joined_to_their_document(tmp_path):
    """`sample --no-context` writes the document once (in the prompts file), not N times;
    `score --prompts` joins it back by prompt_id. Without --prompts such rows are rejected
    by record, naming the field."""
    from importlib import resources

    prompts = resources.files("longreward").joinpath("examples", "prompts.jsonl")
    cands = tmp_path / "cands.jsonl"
    r = run_cli("sample", str(prompts), "-o", str(cands), "--dry-run", "--n", "3",
                "--no-context", "--no-progress")
    assert r.returncode == 0, r.stderr
    rows = read_rows(cands)
    assert len(rows) == 9 and all("context" not in x and x["prompt_id"] for x in rows)
    assert cands.stat().st_size < len(prompts.read_bytes())  # no document copies

    out = tmp_path / "scored.jsonl"
    r = run_cli("score", str(cands), "-o", str(out), "--dry-run", "--no-progress",
                "--prompts", str(prompts))
    assert r.returncode == 0, r.stderr
    scored = read_rows(out)
    assert len(scored) == 9 and all(x["dimensions"] for x in scored)

    out2 = tmp_path / "scored2.jsonl"
    r = run_cli("score", str(cands), "-o", str(out2), "--dry-run", "--no-progress")
    assert r.returncode == 1
    rejected = read_rows(tmp_path / "scored2.jsonl.rejected.jsonl")
    assert len(rejected) == 9 and {x["field"] for x in rejected} == {"context"}
    assert all("--prompts" in x["error"] for x in rejected)


def test_an_edited_answer_is_scored_again_not_kept_stale(judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    ids = write_flat(inp, n_prompts=2, n_cands=3)
    out = tmp_path / "out.jsonl"
    assert run_cli("score", str(inp), *judge_args(judge_double, out)).returncode == 0
    first = {x["id"]: x for x in read_rows(out)}
    assert all(x["document"] for x in first.values())

    rows = [json.loads(x) for x in inp.read_text().splitlines()]
    rows[1]["response"] = "A corrected answer that says something else entirely."
    for row in rows[3:]:  # prompt q1: its document gains an appendix
        row["context"] += "\n\nAn appendix added later."
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = run_cli("score", str(inp), *judge_args(judge_double, out))
    assert r.returncode == 0, r.stderr
    after = read_rows(out)
    assert sorted(x["id"] for x in after) == sorted(ids)  # no duplicates
    by_id = {x["id"]: x for x in after}
    assert by_id["q0-1"]["response"].startswith("A corrected answer")
    # every answer of the prompt whose document changed is scored against the new document
    for cid in ("q1-0", "q1-1", "q1-2"):
        assert by_id[cid]["document"] != first[cid]["document"]
    for cid in ("q0-0", "q0-2"):
        assert by_id[cid] == first[cid]
    assert "changed since scored" in r.stderr


def test_provider_options_from_the_command_line_are_typed_like_a_config_file(tmp_path):
    """--provider-option KEY=VALUE reaches judge.provider_options (score, eval, serve) and
    policy.provider_options (sample), numbers and booleans read as YAML reads them."""
    import typer

    from longreward.cli.score import build_score_options, score_overrides

    config = tmp_path / "score.yaml"
    config.write_text("judge:\n  provider: llama_cpp\n  model: m.gguf\n"
                      "  provider_options: {n_threads: 4, n_gpu_layers: 0}\n")
    flags = score_overrides({"provider_option": ["n_ctx=8192", "verbose=true",
                                                 "chat_format=chatml", "n_gpu_layers=-1"]})
    opts = build_score_options(config, flags)
    assert opts.judge.provider_options == {"n_threads": 4, "n_gpu_layers": -1, "n_ctx": 8192,
                                           "verbose": True, "chat_format": "chatml"}
    with pytest.raises(typer.BadParameter, match="KEY=VALUE"):
        score_overrides({"provider_option": ["n_ctx"]})
    capped = build_score_options(None, score_overrides({"max_retry_after": 7.5}))
    assert capped.judge.max_retry_after == 7.5


def test_score_run_records_its_slowest_calls_and_the_report_shows_them(judge_double,
                                                                        tmp_path):
    """The judge client times every call that reaches the model; `score` keeps the slowest
    in RUN/summary.json and `longreward report` of the scored file lists them. Calls served
    from the run store are not calls: a rerun records none."""
    from longreward.report import build_report

    inp = tmp_path / "in.jsonl"
    write_flat(inp, n_prompts=1, n_cands=2)
    out = tmp_path / "out.jsonl"
    judge_double.delay = 0.02
    r = run_cli("score", str(inp), *judge_args(judge_double, out),
                "--dimensions", "helpfulness,logicality")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "out.jsonl.run" / "summary.json").read_text())
    slow = summary["stats"]["slowest_calls"]
    assert 4 <= len(slow) <= 20  # 2 answers × 2 dimensions (the format probe is not timed)
    assert [c["seconds"] for c in slow] == sorted((c["seconds"] for c in slow), reverse=True)
    assert min(c["seconds"] for c in slow) >= 0.02
    assert {c["tag"] for c in slow} >= {"helpfulness", "logicality"}
    assert all(c["prompt_tokens"] > 0 for c in slow if c["tag"] == "helpfulness")

    html = tmp_path / "report.html"
    build_report([out], html)
    page = html.read_text(encoding="utf-8")
    section = page[page.index('<section id="slowest">'):page.index('<section id="prompts">')]
    assert "helpfulness" in section and "out.jsonl" in section

    r = run_cli("score", str(inp), *judge_args(judge_double, out),
                "--dimensions", "helpfulness,logicality", "--restart")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "out.jsonl.run" / "summary.json").read_text())
    assert summary["stats"]["requests"] == 0 and summary["stats"]["slowest_calls"] == []


def test_a_rejected_key_stops_score_with_one_message_and_no_traceback(judge_double, tmp_path):
    """Every answer's calls get the same 401 at once: one clear message, exit 2, within
    seconds; the units that failed together leave no "Task exception was never retrieved"
    traceback behind the message."""
    inp = tmp_path / "in.jsonl"
    write_flat(inp, n_prompts=3, n_cands=4)
    judge_double.required_api_key = "sk-the-right-key-0123456789"
    out = tmp_path / "out.jsonl"
    t0 = time.monotonic()
    r = run_cli("score", str(inp), *judge_args(judge_double, out),
                env={"LONGREWARD_API_KEY": "sk-a-wrong-key-0123456789"})
    assert r.returncode == 2, r.stderr
    assert time.monotonic() - t0 < 60
    assert "401" in r.stderr or "rejected" in r.stderr.lower()
    assert "Traceback" not in r.stderr and "never retrieved" not in r.stderr, r.stderr[-3000:]
    assert "sk-a-wrong-key-0123456789" not in r.stderr


def test_header_flags_take_curl_form_and_a_bad_one_is_not_echoed():
    import typer

    from longreward.cli._common import key_values

    assert key_values(["X-Token: abc:def", "X-Org=o=1", "Authorization: Basic dXNlcg=="],
                      "--header") == {"X-Token": "abc:def", "X-Org": "o=1",
                                      "Authorization": "Basic dXNlcg=="}
    with pytest.raises(typer.BadParameter) as info:
        key_values(["Xsupersecretvalue"], "--header")
    assert "supersecret" not in str(info.value) and "number 1" in str(info.value)
    with pytest.raises(typer.BadParameter):
        key_values(["dims: 1"], "--weight")  # ':' is only the header form


def test_the_reward_rules_are_flags_of_every_command_that_scores(tmp_path):
    """The paper's rules are one flag each away (docs/reward_rules.md), on score, eval and
    serve alike; a wrong value is refused with the choices."""
    from typer.testing import CliRunner

    from longreward.cli import app

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "context": "The mill opened in 1901. " * 40,
                               "query": "When did the mill open?",
                               "response": "The mill opened in 1901."}) + "\n")
    paper = ["--completeness-mode", "holistic", "--faithfulness-rule", "mean",
             "--statement-grounding", "off", "--no-non-answer-floor",
             "--unscored-dimension", "mean_of_scored"]
    out = tmp_path / "paper.jsonl"
    r = CliRunner().invoke(app, ["score", str(src), "-o", str(out), "--dry-run",
                                 "--no-progress", *paper])
    assert r.exit_code == 0, r.output
    row = json.loads(out.read_text())
    assert row["details"]["completeness"].get("mode", "holistic") == "holistic"
    assert "marks" not in row["details"]["completeness"]
    # the defaults: the checklist
    out2 = tmp_path / "defaults.jsonl"
    assert CliRunner().invoke(app, ["score", str(src), "-o", str(out2), "--dry-run",
                                    "--no-progress"]).exit_code == 0
    assert json.loads(out2.read_text())["details"]["completeness"]["mode"] == "checklist"
    bad = CliRunner().invoke(app, ["score", str(src), "-o", str(tmp_path / "x.jsonl"),
                                   "--dry-run", "--completeness-mode", "listy"])
    assert bad.exit_code == 2 and "checklist" in bad.output
    for command in (["eval", "agreement"], ["eval", "robustness"], ["serve"]):
        help_text = CliRunner().invoke(app, [*command, "--help"],
                                       env={"COLUMNS": "200"}).output
        assert all(f in help_text for f in ("--completeness-mode", "--faithfulness-rule",
                                            "--statement-grounding", "--non-answer-floor")), command
