"""The Ray Data recipe (examples/batch/ray_executor.py) runs a file-mode round's shards on a
local Ray, against the judge double as the executor's server, and ``batch ingest`` reads what
it wrote.

Opt-in: it runs when Ray is installed (``pip install "ray[data]"``, about 270 MB) and
``LONGREWARD_TEST_RAY=1`` is set. Starting a local Ray alone takes 10-20 s on two cores, and
the whole test over a minute on a loaded machine, too much for every CI run (docs/batch.md)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from batch_executor import assert_same_rows, options, score, write_input
from longreward.io.files import default_run_dir
from longreward.judge.batch import BatchOptions, BatchPending, BatchRun, ingest_results

if os.environ.get("LONGREWARD_TEST_RAY") != "1":
    pytest.skip("set LONGREWARD_TEST_RAY=1 (with ray[data] installed) to run the Ray Data recipe",
                allow_module_level=True)
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

RECIPE = Path(__file__).resolve().parents[1] / "examples" / "batch" / "ray_executor.py"


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("ray_executor", RECIPE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ray_executor"] = module
    spec.loader.exec_module(module)
    # the workers import the recipe as the driver did
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             runtime_env={"env_vars": {"PYTHONPATH": str(RECIPE.parent)}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield module
    ray.shutdown()


@pytest.mark.slow
def test_ray_data_executes_the_rounds_and_rows_equal_online(recipe, judge_double, tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, n_prompts=1, n_cands=2)
    online = tmp_path / "online.jsonl"
    assert score(inp, online, options(judge_double)).exit_code == 0

    out = tmp_path / "files.jsonl"
    run_dir = default_run_dir(out)
    for n in range(1, 6):
        try:
            summary = score(inp, out, options(judge_double),
                            BatchRun(BatchOptions(mode="files", max_requests=4), "score"))
            break
        except BatchPending as exc:
            results = tmp_path / "results" / str(n) / "ray.jsonl"
            count = recipe.run(exc.shards, results, [judge_double.base_url], actors=2,
                               requests_per_actor=3)
            assert count == sum(len(Path(s).read_text().splitlines()) for s in exc.shards)
            report = ingest_results(run_dir, [results])
            assert report.new == count and report.missing() == 0
    assert summary.exit_code == 0 and n == 3  # two rounds, then the output
    assert_same_rows(online, out)
