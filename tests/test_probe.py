"""``longreward probe`` against the judge double (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import socket

from typer.testing import CliRunner

from longreward.cli import app
from longreward.judge import OpenAICompatibleAPI
from longreward.judge._probe import probe_endpoint, window_from_error, window_from_models

from judge_double import JudgeDouble

MODEL = "judge-double"


def probe(double: JudgeDouble, **kw: object):
    api = OpenAICompatibleAPI(MODEL, base_url=double.base_url)
    return asyncio.run(probe_endpoint(api, timeout=5.0, **kw))


def checks(report) -> dict[str, bool | None]:
    return {c.name: c.ok for c in report.checks}


def test_a_full_featured_endpoint(judge_double: JudgeDouble) -> None:
    judge_double.context_limit = 32_000
    report = probe(judge_double)
    assert checks(report) == {
        "reachable": True, "model listed": True, "chat works": True, "usage reported": True,
        "structured output": True, "n>1 supported": True, "cached tokens reported": True,
        "context window": True}
    assert report.structured_mode == "json_schema" and report.context_window == 32_000
    assert report.latency_s is not None and report.works
    assert report.suggestions == [f"--base-url {judge_double.base_url} --model {MODEL}"]


def test_a_llama_cpp_like_endpoint(judge_double: JudgeDouble) -> None:
    judge_double.like_llama_cpp()
    judge_double.ignore_n = True
    judge_double.context_limit = 5_000
    report = probe(judge_double)
    assert report.structured_mode == "json_object_schema"
    assert report.n_supported is False and report.context_window == 5_000
    text = "\n".join(report.suggestions)
    assert "--structured-output json_object_schema" in text
    assert "--n-per-request 1" in text
    assert "--completeness-chunk-tokens 1280" in text  # 5000 - 2048 - 1500, in 256s


def test_a_server_that_answers_any_name_gets_its_listed_name_suggested(
        judge_double: JudgeDouble) -> None:
    """llama.cpp's server answers whatever model name is sent; the suggestion names the one
    it lists rather than repeating the name that happened to work."""
    api = OpenAICompatibleAPI("m", base_url=judge_double.base_url)
    report = asyncio.run(probe_endpoint(api, timeout=5.0, check_context=False))
    assert checks(report)["model listed"] is False and report.works
    assert report.suggestions[0].startswith(
        f"--base-url {judge_double.base_url} --model {MODEL}   (the name the server lists")


def test_unknown_model_and_refused_key_are_reported_with_the_fix(
        judge_double: JudgeDouble) -> None:
    judge_double.models = {"the-real-model"}
    report = probe(judge_double)
    assert checks(report)["model listed"] is False
    assert "the-real-model" in report.checks[1].detail
    assert not report.works and "--model" in (report.fatal or "")

    judge_double.models = None
    judge_double.required_api_key = "right-key-123456"
    report = probe(judge_double)
    assert not report.works and any("--api-key-env" in s for s in report.suggestions)


def test_an_unreachable_endpoint() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = OpenAICompatibleAPI(MODEL, base_url=f"http://127.0.0.1:{port}/v1")
    report = asyncio.run(probe_endpoint(api, timeout=2.0))
    assert [(c.name, c.ok) for c in report.checks] == [("reachable", False)]
    assert not report.works and "not reachable" in (report.fatal or "")


def test_windows_from_models_and_errors() -> None:
    assert window_from_models([{"id": "m", "max_model_len": 32768}], "m") == 32768
    assert window_from_models([{"id": "x", "meta": {"n_ctx_train": 8192}}], "m") == 8192
    assert window_from_models([{"id": "a"}, {"id": "b"}], "m") is None
    assert window_from_error("This model's maximum context length is 8,192 tokens.") == 8192
    assert window_from_error("the request exceeds the available context size (4096)") == 4096
    assert window_from_error("bad temperature") is None


def test_cli_table_json_and_exit_codes(judge_double: JudgeDouble) -> None:
    runner = CliRunner()
    judge_double.context_limit = 16_000
    r = runner.invoke(app, ["probe", "--base-url", judge_double.base_url, "--model", MODEL,
                            "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["works"] and data["structured_mode"] == "json_schema"
    assert data["context_window"] == 16_000

    r = runner.invoke(app, ["probe", "--base-url", judge_double.base_url, "--model", MODEL,
                            "--no-context-check"])
    assert r.exit_code == 0
    assert "structured output" in r.output and "suggested flags" in r.output
    assert "not checked" in r.output

    judge_double.required_api_key = "another-key-123456"
    r = runner.invoke(app, ["probe", "--base-url", judge_double.base_url, "--model", MODEL])
    assert r.exit_code == 1 and "--api-key-env" in r.output
