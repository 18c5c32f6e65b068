"""A small run of ``benchmarks/serve_load.py``: concurrent OpenRLHF requests to the real
``longreward serve`` command, the judge double in its own process, a restart on the same run
directory. Checks outcomes and call counts only; the timings are the benchmark's business."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"


@pytest.mark.slow
def test_concurrent_openrlhf_load_shares_document_work(tmp_path):
    spec = importlib.util.spec_from_file_location("serve_load", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    r = bench.run_load(tmp_path, docs=2, prompts_per_doc=2, samples=4, paragraphs=200,
                       baseline_prompts=1, sequential=4)
    first, again = r["first"], r["restart"]
    assert r["requests"] == 16
    assert first["errors"] == [] and again["errors"] == [] and r["sequential"]["errors"] == []
    # Extraction ran once per prompt (document chunks × questions), not once per sample:
    # the 4 samples of a prompt arrived as 4 separate requests and shared it.
    shared = first["judge_calls"]["completeness.extract"] / r["prompts"]
    assert shared == r["direct"]["extract_per_prompt"]
    assert r["unshared_extract_per_prompt"] == 4 * shared
    assert first["judge_calls"]["helpfulness"] == 16
    # A restarted server on the same run directory pays for no judge call.
    assert sum(again["judge_calls"].values()) == 0
    judged = {step: n for step, n in first["judge_calls"].items() if step != "probe"}
    assert again["cache_hits"] == sum(judged.values()) + first["cache_hits"]
