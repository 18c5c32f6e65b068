"""A ``score --batch openai`` run killed (SIGKILL) at each state of a batch resumes the same
batch: no second upload, no second batch, no request run twice, and the rows of an online
run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batch_executor import api_run, assert_same_rows, judge_bodies, options, score, write_input
from longreward.io.files import default_run_dir

from judge_double import JudgeDouble, use_verdict_secret


@pytest.fixture(scope="module")
def double():
    with JudgeDouble() as d:
        yield d


@pytest.fixture(scope="module")
def reference(double, tmp_path_factory):
    """The input and an online run of it (rows, and the judge requests it made)."""
    tmp = tmp_path_factory.mktemp("online")
    inp = tmp / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=2)
    double.reset()
    out = tmp / "online.jsonl"
    assert score(inp, out, options(double)).exit_code == 0
    bodies = judge_bodies(double)
    double.reset()
    return inp, out, bodies


def _events(double, kind: str) -> list[str]:
    return [i for e, i in double.batch_log if e == kind]


def _in_progress(double) -> bool:
    return any(b["status"] == "in_progress" for b in list(double.batches.values()))


STATES = {
    # the file is stored, the reply to the upload is lost
    "uploaded, reply lost": ("hold_upload", "after", lambda d: _events(d, "upload")),
    # the file is uploaded, the batch is not created yet
    "uploaded, no batch": ("hold_create", "before", lambda d: _events(d, "create_request")),
    # the batch is created, the reply is lost
    "created, reply lost": ("hold_create", "after", lambda d: _events(d, "create")),
    "in progress": ("batch_hold", True, _in_progress),
    "completed, not downloaded": ("hold_download", True, lambda d: _events(d, "download")),
}


@pytest.mark.parametrize("state", list(STATES))
def test_killed_at_each_batch_state_resumes_the_same_batch(double, reference, tmp_path, state):
    inp, online, online_bodies = reference
    double.reset()
    knob, value, reached = STATES[state]
    setattr(double, knob, value)
    out = tmp_path / "batch.jsonl"
    use_verdict_secret(default_run_dir(out))  # the reference's, so both send the same requests
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "longreward", "score", str(inp), "-o", str(out), "--base-url",
         double.base_url, "--model", "judge-double", "--timeout", "10", "--no-progress",
         "--batch", "openai", "--batch-option", "poll_interval=0.05"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not reached(double):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, f"never reached {state}"
            time.sleep(0.02)
        time.sleep(0.1)  # whatever the client does next, it is held there
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    setattr(double, knob, None if isinstance(value, str) else False)

    run = api_run()
    summary = score(inp, out, options(double), run)
    assert summary.exit_code == 0
    assert_same_rows(online, out)
    # Two rounds, each uploaded once and run as one batch, each request run once.
    assert len(_events(double, "upload")) == 2
    assert len(_events(double, "create")) == 2
    assert judge_bodies(double) == online_bodies
    assert [r["round"] for r in run.rounds] == [1, 2]
