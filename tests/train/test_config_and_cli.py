"""TrainConfig as a pydantic model (YAML `train:` sections, CLI flags), the eval set, and a
`--model` that cannot be had."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from typer.testing import CliRunner

from longreward.errors import ConfigError
from longreward.train import TrainConfig, train
from longreward.train.config import load_train_config
from longreward.train.model_source import resolve_model

RUN_YAML = """
prompts: prompts.jsonl
train:
  model: HuggingFaceTB/SmolLM2-135M-Instruct
  lora: true
  max-length: 4096
  beta: 0.2
  eval_fraction: 0.1
  eval_every: 50
"""


def test_a_run_yaml_train_section_validates():
    """What ``RunConfig.train: TrainConfig | None`` does with a run file's section."""

    class Run(BaseModel):  # the shape of the run config, with its other sections left out
        model_config = ConfigDict(extra="allow")
        train: TrainConfig | None = None

    run = Run.model_validate(yaml.safe_load(RUN_YAML))
    assert run.train is not None
    assert (run.train.lora, run.train.max_length, run.train.beta) == (True, 4096, 0.2)
    assert run.train.learning_rate == 1e-6  # the paper's default
    with pytest.raises(ValidationError, match="lerning_rate"):
        Run.model_validate({"train": {"lerning_rate": 1.0}})
    with pytest.raises(ValidationError, match="attention"):
        Run.model_validate({"train": {"attention": "fast"}})


def test_load_train_config_reads_the_section_and_flags_win(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text(RUN_YAML)
    cfg = load_train_config(f, beta=0.3, lora=None)
    assert (cfg.beta, cfg.lora, cfg.eval_every) == (0.3, True, 50)
    with pytest.raises(ConfigError, match=r"run.yaml(.|\n)*give eval_file or eval_fraction"):
        load_train_config(f, eval_file="e.jsonl")
    with pytest.raises(ConfigError, match="scheduler"):
        load_train_config(None, scheduler="steep")
    with pytest.raises(ConfigError, match="eval_every needs an eval set"):
        load_train_config(None, eval_every=5)


def test_every_option_is_a_cli_flag_with_help():
    import typer.main

    from longreward.cli import app

    command = typer.main.get_command(app).commands["train"]
    params = {p.name: p for p in command.params}
    for name, info in TrainConfig.model_fields.items():
        assert name in params, f"TrainConfig.{name} has no flag"
        assert params[name].help == info.description and info.description
    out = CliRunner().invoke(app, ["train", "--help"], terminal_width=200)
    assert "--eval-fraction" in out.output and "--lora-merge" in out.output


# ---------------------------------------------------------------------- --model not found


def test_a_hub_name_offline_fails_in_seconds_with_one_line(tmp_path, pairs_file):
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "HF_HOME": str(tmp_path / "hf"), "COLUMNS": "400"}  # one message, unwrapped
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "longreward", "train", str(pairs_file),
                          "--model", "nobody/no-such-model", "-o", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env, timeout=120)
    took = time.monotonic() - t0
    assert out.returncode == 2
    lines = [x for x in out.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, out.stderr
    assert "nobody/no-such-model" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    assert ".gguf" in lines[0] and "Traceback" not in out.stderr
    print(f"failed after {took:.1f}s")  # the 0.1 behaviour was ~53 s of retries


def test_unreachable_hub_and_bad_paths(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))

    def no_network(*_a, **_k):
        raise OSError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", no_network)
    with pytest.raises(ConfigError, match="cannot be reached.*Name or service not known"):
        resolve_model("someone/model")
    with pytest.raises(ConfigError, match="no such file or directory"):
        resolve_model(str(tmp_path / "missing" / "model"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a .gguf model"):
        resolve_model(str(tmp_path / "weights.bin"))
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "m.gguf").write_bytes(b"x")
    with pytest.raises(ConfigError, match="pass the file: --model .*m.gguf"):
        resolve_model(str(tmp_path / "dir"))


def test_a_gguf_file_is_loaded_from_its_directory(tmp_path):
    pytest.importorskip("gguf")
    f = tmp_path / "m.gguf"
    f.write_bytes(b"x")
    src = resolve_model(str(f))
    assert src.location == str(tmp_path) and src.kwargs == {"gguf_file": "m.gguf"}


# ---------------------------------------------------------------------- eval set


def _cfg(tmp_path, model_dir, pairs_file, **kw) -> TrainConfig:
    base = dict(pairs=str(pairs_file), model=str(model_dir), output_dir=str(tmp_path / "run"),
                learning_rate=2e-3, max_steps=4, warmup_ratio=0.0, scheduler="constant",
                gradient_checkpointing=False, log_every=100)
    base.update(kw)
    return TrainConfig(**base)


def _rows(tmp_path):
    return [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]


def test_eval_fraction_logs_eval_rows_every_n_steps(tmp_path, tiny_model_dir, pairs_file):
    res = train(_cfg(tmp_path, tiny_model_dir, pairs_file, eval_fraction=0.25, eval_every=2),
                log=lambda _m: None)
    rows = _rows(tmp_path)
    evals = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4]  # every 2 steps, and after the last
    for key in ("eval_rewards/chosen", "eval_rewards/rejected", "eval_rewards/margins",
                "eval_rewards/accuracies", "eval_logps/chosen", "eval_logps/rejected",
                "eval_logits/chosen", "eval_logits/rejected", "eval_dpo_loss", "eval_nll"):
        assert key in evals[0]
    assert evals[0]["eval_pairs"] == 1  # 4 pairs, a quarter held out
    # 3 pairs left to train on: an epoch is 3 steps
    train_rows = [r for r in rows if "loss" in r]
    assert train_rows[2]["epoch"] == pytest.approx(1.0)
    assert res.eval_metrics == evals[-1]


def test_eval_file_at_the_end(tmp_path, tiny_model_dir, pairs_file):
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(pairs_file.read_text().splitlines()[0] + "\n")
    res = train(_cfg(tmp_path, tiny_model_dir, pairs_file, eval_file=str(eval_file),
                     max_steps=2), log=lambda _m: None)
    evals = [r for r in _rows(tmp_path) if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2] and evals[0]["eval_pairs"] == 1
    # the eval pair is also a training pair here: training moved its margin up from 0
    assert res.eval_metrics["eval_rewards/margins"] > 0
    assert list((tmp_path / "run").glob("ref_logps-eval-*.pt"))
