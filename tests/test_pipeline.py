"""``longreward run``: sample → score → pairs from one config, resumable. Killed mid-way with
SIGKILL and rerun, it gives the same pairs as an uninterrupted run and repeats no completed
model call; a rerun with nothing to do makes no call."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from longreward.stages.run import load_run_config, run_pipeline

from judge_double import use_verdict_secret

SRC = Path(__file__).resolve().parents[1] / "src"

DOCS = [
    "Mara kept bees on the hill. She sold honey at the Saturday market. The hives were painted "
    "blue so the bees could find them. In winter she fed them sugar water.",
    "The bridge was built in 1890 from iron. It carried trains over the river until 1960. "
    "Today it is a footpath. Engineers inspect the rivets every spring.",
    "Owls hunt at night. Their feathers are soft, so they fly silently. They swallow prey "
    "whole and cough up pellets of bone and fur.",
]


def write_setup(root: Path, base_url: str, *, n_prompts: int = 3, bad_row: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "prompts.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n_prompts):
            fh.write(json.dumps({"id": f"q{i}", "context": DOCS[i % len(DOCS)],
                                 "query": f"Summarise document {i}."}) + "\n")
        if bad_row:
            fh.write(json.dumps({"id": "broken", "query": "no document"}) + "\n")
    config = {
        "prompts": "prompts.jsonl",  # relative to this file
        "run_dir": "out",
        "sample": {
            "policy": {"provider": "openai_compatible", "model": "policy", "base_urls": [base_url],
                       "max_concurrency": 1, "max_retries": 1},
            "n": 5, "seed": 11, "prompt_concurrency": 1,
        },
        "score": {
            "judge": {"provider": "openai_compatible", "model": "judge", "base_urls": [base_url],
                      "max_concurrency": 2, "max_retries": 1},
            "prompt_concurrency": 1,
        },
        "pairs": {"format": "trl", "min_candidates": 3},
    }
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def bodies(requests: list[dict]) -> Counter[str]:
    return Counter(json.dumps(r["body"], sort_keys=True) for r in requests)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def cli(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-m", "longreward", "run", str(config), "--no-progress"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_run_in_process_then_rerun_makes_no_call(judge_double: Any, tmp_path: Path) -> None:
    cfg = load_run_config(write_setup(tmp_path / "a", judge_double.base_url))
    assert cfg.prompts == str(tmp_path / "a" / "prompts.jsonl")
    s = asyncio.run(run_pipeline(cfg))
    assert s.sample.candidates == 15 and len(s.sample.errors) == 1  # the broken row, by record
    assert s.model_calls["sample"] == 3 and s.model_calls["score"] > 0
    assert s.pairs.pairs + sum(s.pairs.skipped.values()) == 3
    assert s.exit_code == 1  # a record was rejected
    # candidates carry only prompt_id; score and pairs join the document from the prompts
    assert all("context" not in row for row in read(Path(cfg.outputs.candidates)))
    assert s.score.answers_scored == 15 and not s.score.rejected
    # the library writes the summaries beside the store (not only the CLI)
    run_dir = Path(cfg.run_dir)
    assert json.loads((run_dir / "run_summary.json").read_text())["score"]["scored"] == 15
    assert json.loads((run_dir / "summary.json").read_text())["scored"] == 15
    n = judge_double.count()
    s2 = asyncio.run(run_pipeline(cfg))
    assert judge_double.count() == n  # nothing new to do: no model call at all
    assert s2.model_calls == {"sample": 0, "score": 0, "pairs": 0}
    assert read(Path(cfg.outputs.pairs)) == read(Path(s.pairs.outputs[0]))


def test_rerun_with_changed_settings_is_refused_before_any_call(judge_double: Any, tmp_path: Path) -> None:
    from longreward.store import StaleRunError

    path = write_setup(tmp_path / "a", judge_double.base_url, n_prompts=2, bad_row=False)
    asyncio.run(run_pipeline(load_run_config(path)))
    scored = read(tmp_path / "a" / "out" / "scored.jsonl")
    n = judge_double.count()
    # Scored on fewer dimensions, or sampled from another model: the stored scores/answers
    # are not this run's, and a rerun must say so rather than reuse them.
    for override in ({"score": {"dimensions": ["helpfulness"]}},
                     {"sample": {"policy": {"model": "policy-v2"}}},
                     {"sample": {"n": 4}}):
        with pytest.raises(StaleRunError, match="Fix:"):
            asyncio.run(run_pipeline(load_run_config(path, override)))
    assert judge_double.count() == n
    assert read(tmp_path / "a" / "out" / "scored.jsonl") == scored
    # Load settings (concurrency, retries, progress) are not part of what a stage produces.
    s = asyncio.run(run_pipeline(load_run_config(
        path, {"score": {"judge": {"max_concurrency": 5}, "prompt_concurrency": 3}})))
    assert s.model_calls == {"sample": 0, "score": 0, "pairs": 0}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_pairs_without_repeating_calls(judge_double: Any, tmp_path: Path) -> None:
    # Reference: an uninterrupted run.
    ref_cfg = write_setup(tmp_path / "ref", judge_double.base_url)
    proc = cli(ref_cfg)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 1, out.decode()  # 1: the broken prompt row was reported
    ref_requests = judge_double.requests
    ref_pairs = read(tmp_path / "ref" / "out" / "pairs.jsonl")
    assert ref_pairs
    judge_double.reset()

    # The same run, killed with SIGKILL part-way through scoring, then rerun.
    judge_double.delay = 0.02  # slow enough for the kill to land mid-stage
    cfg = write_setup(tmp_path / "killed", judge_double.base_url)
    # The judge's verdict codes come from a secret made once per run store: give this run
    # the reference run's, so that both send the same requests.
    (ref_store,) = (tmp_path / "ref").rglob("longreward.sqlite")
    use_verdict_secret(tmp_path / "killed" / ref_store.relative_to(tmp_path / "ref"),
                       like=ref_store)
    proc = cli(cfg)
    deadline = time.monotonic() + 120
    target = len(ref_requests) // 2
    while judge_double.count() < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = judge_double.count()
    assert 0 < killed_at < len(ref_requests)
    judge_double.delay = 0.0
    proc = cli(cfg)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 1, out.decode()

    assert read(tmp_path / "killed" / "out" / "pairs.jsonl") == ref_pairs
    # Every request of the reference run was made, and none that had completed before the
    # kill was made again: the only repeats are requests in flight at the moment of the kill
    # (at most the policy's 1 + the judge's 2 concurrent requests).
    got, want = bodies(judge_double.requests), bodies(ref_requests)
    assert set(got) == set(want)
    repeated = sum((got - want).values())
    assert repeated <= 3, repeated
