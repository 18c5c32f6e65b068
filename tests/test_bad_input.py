"""Bad input and faults, tried as an attacker or a new user would (issue #16, sections 1 and
2): each gives a clear message that names the record or file, the right exit code, and loses
nothing. The CLI runs in-process (``CliRunner``) unless a test needs a process of its own (a
FIFO that blocks), so these stay cheap."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from longreward import ScoreOptions, score_file
from longreward.cli import app
from longreward.errors import RecordError
from longreward.io.files import iter_rows
from longreward.io.records import FieldMap, PromptRecord, document_key, group_records, read_prompts
from longreward.judge import (
    GenerateConfig,
    Message,
    ModelClient,
    ModelError,
    _transport,
)
from longreward.judge.providers.openai_compatible import OpenAICompatibleAPI

from judge_double import JudgeDouble

DOC = ("The lighthouse keeper logged 212 storms in 1911. Supplies came by boat every "
       "fortnight. The lamp was converted to electricity in 1926. ") * 3


def row(rid: str, response: str = "The keeper logged 212 storms.", pid: str = "p", **extra: Any
        ) -> dict[str, Any]:
    return {"id": rid, "prompt_id": pid, "context": DOC, "query": "How many storms?",
            "response": response, **extra}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run(*args: str) -> tuple[int, str]:
    """The CLI in this process: (exit code, stderr + stdout with line breaks undone)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.output.split())


def score(inp: Path, out: Path, *more: Any) -> tuple[int, str]:
    return run("score", inp, "-o", out, "--dry-run", "--no-progress", *more)


# --------------------------------------------------------------------------- 1. records


def test_a_deeply_nested_line_and_a_repeated_key_are_rejected_records_and_the_rest_is_scored(
        tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    dup = json.dumps(row("twice"))[:-1] + ', "response": "a second answer"}'
    write_jsonl(inp, ["[" * 100_000 + "]" * 100_000, dup, row("good"),
                      '{"id": "deep", "meta": ' + "[" * 150 + "]" * 150 + "}"])
    code, text = score(inp, tmp_path / "out.jsonl")
    assert code == 1 and "Traceback" not in text
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["good"]
    rejected = {r["record"]: r for r in read_jsonl(tmp_path / "out.jsonl.rejected.jsonl")}
    assert "nested more than 100 levels" in rejected["in.jsonl:1"]["error"]
    assert rejected["in.jsonl:2"]["field"] == "response"
    assert "'response' appears twice" in rejected["in.jsonl:2"]["error"]
    assert "nested" in rejected["in.jsonl:4 (id deep)"]["error"]


def test_a_repeated_key_in_a_json_file_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text('[{"id": "a", "query": "q", "query": "other"}]')
    [(_, error)] = list(iter_rows(path))
    assert isinstance(error, RecordError) and error.field == "query"
    assert "appears twice" in str(error)


def test_a_document_given_as_a_list_of_strings_is_joined_in_every_reader(tmp_path: Path
                                                                         ) -> None:
    parts = ["First paragraph about storms.", "Second paragraph about boats."]
    joined = "First paragraph about storms.\n\nSecond paragraph about boats."
    records = [r for r in group_records([("r1", {"id": "a", "context": parts, "query": "Q",
                                                 "response": "x"})])
               if isinstance(r, PromptRecord)]
    assert records[0].context == joined
    path = write_jsonl(tmp_path / "prompts.jsonl", [{"id": "p", "context": parts, "query": "Q"},
                                                    {"id": "q", "context": ["ok", 3], "query": "Q"}])
    prompts, errors = read_prompts(path)
    assert prompts["p"].context == joined and prompts["p"].document_key == document_key(joined)
    assert errors[0].field == "context[1]" and "strings only" in str(errors[0])


def test_a_list_document_goes_through_sample_score_and_pairs(tmp_path: Path) -> None:
    paragraphs = [f"Paragraph {i}: the keeper logged {i * 7} storms in {1900 + i}."
                  for i in range(30)]
    prompts = write_jsonl(tmp_path / "prompts.jsonl",
                          [{"id": "p1", "context": paragraphs, "query": "How many storms?"}])
    cands, scored, pairs = (tmp_path / n for n in ("c.jsonl", "s.jsonl", "pairs.jsonl"))
    assert run("sample", prompts, "-o", cands, "--dry-run", "--no-progress")[0] == 0
    assert score(cands, scored)[0] == 0
    assert {r["document"] for r in read_jsonl(scored)} == {document_key("\n\n".join(paragraphs))}
    code, text = run("pairs", scored, "-o", pairs)
    assert code == 0, text
    [pair] = read_jsonl(pairs)
    assert "\n\n".join(paragraphs) in pair["prompt"][-1]["content"]


def test_a_wrong_field_name_suggests_the_flag_that_fixes_it() -> None:
    rows = [("r1", {"idx": "a", "context": "D", "question": "Q", "response": "x"}),
            ("r2", {"id": "b", "article": "D", "query": "Q", "response": "x"}),
            ("r3", {"id": "c", "context": "D", "query": "Q", "answer": "x"}),
            ("r4", {"id": "d", "contxt": "D", "query": "Q", "response": "x"}),
            ("r5", {"id": "e", "context": "D", "query": "Q", "reply": "x"})]
    errors = [str(e) for e in group_records(rows) if isinstance(e, RecordError)]
    assert "--field-query question" in errors[0]
    assert "--field-context article" in errors[1]
    assert "--field-response answer" in errors[2]
    assert "--field-context contxt" in errors[3]  # a misspelling is close enough
    assert "fields are 'id', 'context', 'query', 'reply'" in errors[4]
    fixed = list(group_records(rows[:1], FieldMap(id="idx", query="question")))
    assert isinstance(fixed[0], PromptRecord)


def test_empty_inputs_exit_2_in_every_command_that_reads_them(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    for args in (("score", empty, "-o", tmp_path / "s.jsonl", "--dry-run", "--no-progress"),
                 ("sample", empty, "-o", tmp_path / "c.jsonl", "--dry-run", "--no-progress"),
                 ("pairs", empty, "-o", tmp_path / "p.jsonl")):
        code, text = run(*args)
        assert code == 2 and "holds no records" in text, (args[0], text)
    assert not (tmp_path / "s.jsonl").exists() and not (tmp_path / "p.jsonl").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_input_says_that_it_waits_then_reads_what_is_written(tmp_path: Path) -> None:
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "longreward", "score", str(fifo), "-o",
                             str(out), "--dry-run", "--no-progress"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        with open(fifo, "w", encoding="utf-8") as fh:  # blocks until score opens it
            fh.write(json.dumps(row("a")) + "\n")
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "is a pipe" in " ".join(stderr.split())
    assert [r["id"] for r in read_jsonl(out)] == ["a"]


# --------------------------------------------------------------------------- 1. outputs


@pytest.mark.parametrize("command", ["score", "pairs"])
def test_outputs_that_cannot_be_written_are_refused_with_exit_2(tmp_path: Path, command: str
                                                                ) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [row("a")])
    if command == "pairs":
        assert score(inp, tmp_path / "scored.jsonl")[0] == 0
        inp = tmp_path / "scored.jsonl"
    before = inp.read_bytes()
    (tmp_path / "a_dir.jsonl").mkdir()
    (tmp_path / "a_file").write_text("x")
    extra = ("--dry-run", "--no-progress") if command == "score" else ()
    cases = {tmp_path / "a_dir.jsonl": "is a directory",
             tmp_path / "a_file" / "out.jsonl": "a_file is a file, not a folder",
             inp: "is the input"}
    for output, says in cases.items():
        code, text = run(command, inp, "-o", output, *extra)
        assert code == 2 and says in text and "Traceback" not in text, text
    assert inp.read_bytes() == before  # the input is untouched


def test_an_unwritable_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [row("a")])
    if Path("/proc/self").is_dir():  # writes fail there even for root
        code, text = score(inp, Path("/proc/self/x/out.jsonl"))
        assert code == 2 and "cannot write the output" in text
    code, text = score(inp, tmp_path / "out.jsonl", "--run-dir", inp)
    assert code == 2 and "run directory" in text and "is a file" in text


def test_the_same_id_from_another_input_is_refused_not_dropped(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    first = write_jsonl(tmp_path / "a.jsonl", [row("x", "The keeper logged 212 storms.")])
    second = write_jsonl(tmp_path / "b.jsonl", [row("x", "A different answer about boats."),
                                                row("y", "Boats came every fortnight.")])
    assert score(first, out, "--run-dir", tmp_path / "ra")[0] == 0
    kept = read_jsonl(out)
    code, text = score(second, out, "--run-dir", tmp_path / "rb")
    assert code == 1
    assert "record x (prompt p), field 'id'" in text and "another input" in text
    rows = {r["id"]: r for r in read_jsonl(out)}
    assert rows["x"] == kept[0]  # the first answer's row is still there, unchanged
    assert rows["y"]["response"] == "Boats came every fortnight."  # the rest is scored
    assert "x (prompt p)" in read_jsonl(tmp_path / "out.jsonl.rejected.jsonl")[0]["record"]


def test_the_same_answer_from_another_run_directory_is_kept_and_a_restart_keeps_the_others(
        tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    a = write_jsonl(tmp_path / "a.jsonl", [row("x")])
    b = write_jsonl(tmp_path / "b.jsonl", [row("y", "Boats came every fortnight.", pid="q")])
    assert score(a, out, "--run-dir", tmp_path / "ra")[0] == 0
    assert score(b, out, "--run-dir", tmp_path / "rc")[0] == 0
    code, text = score(a, out, "--run-dir", tmp_path / "rb")
    assert code == 0 and "kept, not scored again" in text and "judged this run │ 0" in text
    code, text = score(a, out, "--run-dir", tmp_path / "rb", "--restart")
    assert code == 0 and "judged this run │ 1" in text
    # a restart starts over what this run directory made; y, another one's, is not lost
    assert sorted(r["id"] for r in read_jsonl(out)) == ["x", "y"]


def test_pairs_finds_the_run_directory_score_was_given(tmp_path: Path) -> None:
    rows = [row(f"a{k}", f"Answer {k}: the keeper logged {200 + k} storms.") for k in range(5)]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    scored = tmp_path / "scored.jsonl"
    assert score(inp, scored, "--run-dir", tmp_path / "elsewhere")[0] == 0
    assert not (tmp_path / "scored.jsonl.run").exists()
    code, text = run("pairs", scored, "-o", tmp_path / "pairs.jsonl")
    assert code == 0, text
    assert DOC.strip() in read_jsonl(tmp_path / "pairs.jsonl")[0]["prompt"][-1]["content"]


def test_pairs_on_answers_never_scored_says_score_it_first(tmp_path: Path) -> None:
    flat_rows = write_jsonl(tmp_path / "flat.jsonl", [row("a"), row("b")])
    grouped = write_jsonl(tmp_path / "grouped.jsonl", [
        {"id": "p", "context": DOC, "query": "Q?", "candidates": ["one", "two"]}])
    for path in (flat_rows, grouped):
        code, text = run("pairs", path, "-o", tmp_path / "pairs.jsonl")
        assert code == 2 and "score it first" in text and "--retry-unscored" not in text, text


def test_the_library_writes_the_run_summary(tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [row("a"), row("b", "Another answer.")])
    summary = asyncio.run(score_file(inp, tmp_path / "out.jsonl",
                                     ScoreOptions(judge={"provider": "dry_run"}),
                                     run_dir=tmp_path / "run"))
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["answers"] == summary.answers_total == 2
    assert written["scored"] == 2 and written["exit_code"] == 0


# --------------------------------------------------------------------------- 1. the judge


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_judge_nobody_listens_at_stops_the_run_fast_with_what_to_do(tmp_path: Path) -> None:
    inp = write_jsonl(tmp_path / "in.jsonl", [row(f"a{k}") for k in range(3)])
    code, text = run("score", inp, "-o", tmp_path / "out.jsonl", "--no-progress", "--model",
                     "m", "--base-url", f"http://127.0.0.1:{_free_port()}/v1")
    assert code == 2 and "Traceback" not in text
    assert "cannot connect to the judge" in text and "start the judge server" in text


def test_a_call_after_its_client_closed_fails_as_a_call_not_a_bug(judge_double: JudgeDouble
                                                                  ) -> None:
    """A run stopped by a judge answering 500 closed its client while other answers' calls
    waited to retry; they raised httpx's RuntimeError, logged as internal errors with a
    traceback."""
    judge_double.fail_with = (500, "internal server error")

    async def main() -> BaseException | None:
        client = ModelClient(OpenAICompatibleAPI("m", base_url=judge_double.base_url),
                             structured_output="text", backoff_base=0.2, max_retries=3)
        call = asyncio.ensure_future(client.generate(
            [Message(role="user", content="hello")], GenerateConfig(temperature=0.0)))
        while not judge_double.requests:  # the call is now in its retry backoff
            await asyncio.sleep(0.01)
        await client.aclose()
        try:
            await call
        except BaseException as exc:  # noqa: BLE001 - the type is the assertion
            return exc
        return None

    error = asyncio.run(main())
    assert isinstance(error, ModelError), repr(error)
    assert "closed" in str(error)


def test_a_judge_answering_500_until_the_run_stops_ends_in_one_message(
        judge_double: JudgeDouble, tmp_path: Path) -> None:
    judge_double.fail_with = (500, "internal server error")
    rows = [row(f"{p}{k}", f"Answer {k}.", pid=p) for p in "abc" for k in range(4)]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    # as a user sees it: a real process, its log lines and its error message together
    proc = subprocess.run(
        [sys.executable, "-m", "longreward", "score", str(inp), "-o", str(tmp_path / "out.jsonl"),
         "--no-progress", "--model", "m", "--base-url", judge_double.base_url,
         "--max-retries", "1", "--structured-output", "text"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    code, text = proc.returncode, " ".join((proc.stderr + proc.stdout).split())
    assert code == 2 and text.count("failed 5 calls in a row") == 1, text
    for noise in ("Traceback", "client has been closed", "internal error"):
        assert noise not in text


def test_a_judge_that_never_replies_is_reported_while_requests_wait(
        judge_double: JudgeDouble, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(_transport, "STALL_S", 0.3)
    monkeypatch.setattr(_transport, "STALL_CHECK_S", 0.1)
    judge_double.hold = True

    async def main() -> bool:
        client = ModelClient(OpenAICompatibleAPI("m", base_url=judge_double.base_url),
                             structured_output="text", timeout=60)
        call = asyncio.ensure_future(client.generate(
            [Message(role="user", content="hello")], GenerateConfig(temperature=0.0)))
        for _ in range(300):  # no progress display: the transport's own timer reports it
            if any("no reply from" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
        reported_while_waiting = not call.done()
        judge_double.hold = False
        await call
        await client.aclose()
        return reported_while_waiting

    with caplog.at_level(logging.WARNING, logger="longreward.judge"):
        waiting = asyncio.run(main())
    assert any("no reply from" in r.getMessage() for r in caplog.records)
    assert waiting


def test_answers_a_judge_failed_end_with_a_consistent_table_and_what_to_do(
        judge_double: JudgeDouble, tmp_path: Path) -> None:
    judge_double.delay = 2.0  # every call times out
    inp = write_jsonl(tmp_path / "in.jsonl", [row("a")])
    code, text = run("score", inp, "-o", tmp_path / "out.jsonl", "--no-progress", "--model",
                     "m", "--base-url", judge_double.base_url, "--timeout", "0.3",
                     "--max-retries", "0", "--structured-output", "text")
    assert code == 1
    assert "judged this run │ 1" in text and "with a reward │ 0" in text
    assert "unscored on every dimension │ 1" in text
    assert "--retry-unscored" in text and "most often" in text


# --------------------------------------------------------------------------- 2. new users


def test_help_reads_as_text_without_a_terminal() -> None:
    code, text = run("--version")
    assert code == 0 and text.startswith("longreward ")
    for command in (["score"], ["sample"], ["pairs"], ["run"], ["train"], ["eval", "agreement"],
                    ["report"], ["probe"], ["mix"]):
        result = CliRunner().invoke(app, [*command, "--help"])
        assert result.exit_code == 0, command
        assert "<str>" not in result.stdout and "<bool>" not in result.stdout
        assert "…" not in result.stdout and "╭" not in result.stdout  # nothing cut, no boxes
    score_help = CliRunner().invoke(app, ["score", "--help"]).stdout
    for flag in ("--completeness-chunk-tokens", "--max-retry-after", "--structured-output"):
        assert flag in score_help


def test_training_keeps_other_libraries_warnings_out_of_its_lines(
        capsys: pytest.CaptureFixture[str]) -> None:
    from longreward.cli.train import library_output

    other = logging.getLogger("transformers.modeling_utils")
    with library_output(shown=False):
        warnings.warn_explicit("`x` is deprecated", FutureWarning, "/site-packages/peft/a.py", 1)
        warnings.warn_explicit("renamed", FutureWarning, "/site-packages/transformers/b.py", 2)
        other.warning("a note from a library")
        print("step=1 loss=0.69")
    out = capsys.readouterr()
    assert "deprecated" not in out.err and "a note" not in out.err
    assert "step=1 loss=0.69" in out.out
    assert "(2 FutureWarning" in out.out and "--verbose shows them" in out.out
    with library_output(shown=True), pytest.warns(FutureWarning):
        warnings.warn("shown when asked", FutureWarning, stacklevel=1)


REPO = Path(__file__).resolve().parent.parent


def _readme_commands(heading: str) -> list[str]:
    """The ``longreward`` lines (continuations joined) of one README section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = section.replace("\\\n", " ").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.startswith("longreward ")]


def test_the_readme_eval_and_report_lines_run_as_pasted(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import shlex
    import shutil

    shutil.copytree(REPO / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    commands = _readme_commands("## Can the reward be trusted?")
    assert [c.split()[1] for c in commands] == ["eval", "eval", "report", "probe"]
    pairs = tmp_path / "out" / "pairs.jsonl"  # step 2 of the set-up makes it
    write_jsonl(tmp_path / "in.jsonl", [row(f"a{k}", f"Answer {k}.") for k in range(5)])
    assert score(tmp_path / "in.jsonl", tmp_path / "s.jsonl")[0] == 0
    assert run("pairs", tmp_path / "s.jsonl", "-o", pairs)[0] == 0
    for command in commands[:3]:
        code, text = run(*shlex.split(command)[1:])
        assert code == 0, (command, text)
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000


def test_the_readme_serve_line_names_files_that_exist() -> None:
    import yaml

    [command] = [c for c in _readme_commands("## Online RL") if c.startswith("longreward serve")]
    config = REPO / command.split("--config", 1)[1].split()[0]
    prompts = yaml.safe_load(config.read_text(encoding="utf-8"))["prompts"]
    assert (config.parent / prompts).is_file()
    assert "--prompts" not in command  # the config sets it
