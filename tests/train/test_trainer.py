"""End to end on CPU: a few steps move the margin, checkpoints reload and resume, LoRA runs."""

from __future__ import annotations

import json

import pytest
import torch
from lr_train_helpers import make_tokenizer
from typer.testing import CliRunner

from longreward.train import TrainConfig, train
from longreward.train.attention import register_shared_prefix_attention
from longreward.train.data import build_dataset
from longreward.train.logprobs import answer_logps
from longreward.train.packing import pack_pairs


def _margin(model_path, pairs_file) -> float:
    from transformers import AutoModelForCausalLM

    tok = make_tokenizer()
    pairs, _ = build_dataset(pairs_file, tok, 4096)
    model = AutoModelForCausalLM.from_pretrained(
        model_path, attn_implementation=register_shared_prefix_attention())
    with torch.no_grad():
        lp = answer_logps(model, pack_pairs(pairs), "eager_mask")
    return float((lp.chosen - lp.rejected).mean())


def _mean_answer_logits(model_path, pairs_file, rows, side) -> float:
    """The mean over the first step's pair's answer tokens of the mean logit over the
    vocabulary, from an ordinary full-logits forward (TRL's ``logits/chosen``)."""
    import random

    from transformers import AutoModelForCausalLM

    pairs, _ = build_dataset(pairs_file, make_tokenizer(), 4096)
    order = list(range(len(pairs)))
    random.Random(42 * 1_000_003).shuffle(order)  # epoch 0's order (seed 42)
    pair = pairs[order[0]]
    answer = pair.chosen_ids if side == "chosen" else pair.rejected_ids
    model = AutoModelForCausalLM.from_pretrained(model_path)
    ids = torch.tensor([pair.prompt_ids + answer])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    P = len(pair.prompt_ids)
    return float(logits[P - 1 : -1].float().mean(-1).mean())


def _cfg(tmp_path, model_dir, pairs_file, **kw) -> TrainConfig:
    base = dict(pairs=str(pairs_file), model=str(model_dir), output_dir=str(tmp_path / "run"),
                learning_rate=2e-3, max_steps=6, warmup_ratio=0.0, scheduler="constant",
                gradient_checkpointing=True, log_every=100)
    base.update(kw)
    return TrainConfig(**base)


def test_steps_raise_margin_and_checkpoint_resumes(tmp_path, tiny_model_dir, pairs_file):
    from transformers import AutoModelForCausalLM

    before = _margin(tiny_model_dir, pairs_file)
    cfg = _cfg(tmp_path, tiny_model_dir, pairs_file, save_every=3)
    res = train(cfg, log=lambda _m: None)
    assert res.steps == 6
    ckpt = res.checkpoints[-1]
    assert [c.name for c in res.checkpoints] == ["checkpoint-3", "checkpoint-6"]
    after = _margin(ckpt, pairs_file)
    assert after > before + 0.5

    # Parameters changed, and the checkpoint is a plain HF model dir + config + state.
    old = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    new = AutoModelForCausalLM.from_pretrained(ckpt)
    assert not torch.equal(old.model.layers[0].self_attn.q_proj.weight,
                           new.model.layers[0].self_attn.q_proj.weight)
    assert json.loads((ckpt / "training_config.json").read_text())["beta"] == 0.15
    assert "longreward" not in (ckpt / "config.json").read_text()

    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    # TRL DPOTrainer's names, plus ours
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
                "rewards/accuracies", "logps/chosen", "logps/rejected", "logits/chosen",
                "logits/rejected", "learning_rate", "epoch", "grad_norm", "dpo_loss", "nll",
                "tokens_per_s", "tokens_per_s_trl", "peak_mem_gib"):
        assert key in rows[0]
    assert 0 < rows[0]["peak_mem_gib"] < 1024  # process peak RSS on CPU, in GiB
    assert rows[-1]["rewards/margins"] > rows[0]["rewards/margins"]
    # 4 pairs, batch 1: an epoch is 4 steps; the epoch is fractional, as TRL logs it
    assert [r["epoch"] for r in rows] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    # TRL runs the prompt twice per pair: more tokens for the same pairs in the same time
    assert rows[0]["tokens_per_s_trl"] > rows[0]["tokens_per_s"]
    # logits/*: TRL's mean logit over each side's answer tokens, recomputed from the weights
    # the first step saw (the initial model: batch 1, so step 1 is one pair)
    assert rows[0]["logits/chosen"] == pytest.approx(_mean_answer_logits(
        tiny_model_dir, pairs_file, rows, side="chosen"), rel=1e-4)

    # trainer_state.json as a Hugging Face Trainer writes it: each checkpoint's log_history
    # holds the rows up to its step; the output directory's adds the closing summary.
    from transformers.trainer_callback import TrainerState

    state3 = TrainerState.load_from_json(str(res.checkpoints[0] / "trainer_state.json"))
    assert state3.global_step == 3 and state3.max_steps == 6 and state3.epoch == 0.75
    assert state3.log_history == rows[:3]
    final = TrainerState.load_from_json(str(tmp_path / "run" / "trainer_state.json"))
    assert final.log_history[:6] == rows and final.global_step == 6
    summary = final.log_history[-1]
    assert summary["train_loss"] == pytest.approx(sum(r["loss"] for r in rows) / 6)
    assert summary["train_runtime"] > 0 and summary["step"] == 6

    # Resume from step 3 with the same config: the cached reference is reused and the resumed
    # run ends with the same weights as the uninterrupted one.
    cfg2 = _cfg(tmp_path, tiny_model_dir, pairs_file, save_every=0,
                resume_from=str(res.checkpoints[0]))
    logs: list[str] = []
    res2 = train(cfg2, log=logs.append)
    assert res2.steps == 6
    assert any("resumed from" in m for m in logs)
    resumed_state = TrainerState.load_from_json(str(res2.checkpoints[-1] / "trainer_state.json"))
    steps = [r["step"] for r in resumed_state.log_history]
    assert steps == [1, 2, 3, 4, 5, 6]  # the history up to the checkpoint, then the new steps
    assert any("reusing" in m for m in logs)
    resumed = AutoModelForCausalLM.from_pretrained(res2.checkpoints[-1])
    for (n, a), (_, b) in zip(new.named_parameters(), resumed.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=n)


def test_lora_trains_adapters_only(tmp_path, tiny_model_dir, pairs_file):
    cfg = _cfg(tmp_path, tiny_model_dir, pairs_file, lora=True, lora_r=4, lora_alpha=8,
               max_steps=3, learning_rate=1e-2)
    res = train(cfg, log=lambda _m: None)
    ckpt = res.checkpoints[-1]
    assert (ckpt / "adapter_config.json").exists()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # Step 1: adapters start at zero (B = 0), so policy == reference and the loss is log 2 + λ·NLL.
    assert rows[0]["dpo_loss"] == pytest.approx(0.6931, abs=1e-3)
    assert rows[-1]["rewards/margins"] > rows[0]["rewards/margins"]

    # The reference is the base model: adapters disabled reproduces it, enabled differs.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from longreward.train.reference import reference_mode

    attn = register_shared_prefix_attention()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn)
    batch = pack_pairs(build_dataset(pairs_file, make_tokenizer(), 4096)[0][:2])
    with torch.no_grad():
        want = answer_logps(base, batch, "eager_mask").chosen
    policy = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn), ckpt)
    with reference_mode(policy):
        got = answer_logps(policy, batch, "eager_mask").chosen
    torch.testing.assert_close(got, want)
    with torch.no_grad():
        trained = answer_logps(policy, batch, "eager_mask").chosen
        assert not torch.allclose(trained, want)

    # lora_merge: checkpoint-N/merged is a plain model directory holding the same policy.
    assert res.merged == ckpt / "merged" and not (res.merged / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(res.merged, attn_implementation=attn)
    with torch.no_grad():
        torch.testing.assert_close(answer_logps(merged, batch, "eager_mask").chosen, trained,
                                   rtol=1e-4, atol=1e-4)


def test_cli_trains_and_reports_bad_rows(tmp_path, tiny_model_dir, pairs_file):
    from longreward.cli import app

    with pairs_file.open("a") as fh:
        fh.write('{"prompt": "w1", "chosen": ""}\n')
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text("max_steps: 1\nlearning_rate: 1.0e-4\nbeta: 0.2\n")
    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["train", str(pairs_file), "--model", str(tiny_model_dir),
                                 "--output-dir", str(out), "--config", str(cfg_file),
                                 "--beta", "0.3", "--no-gradient-checkpointing"])
    assert r.exit_code == 0, r.output
    assert "pairs.jsonl:5" in r.output and "1 rows skipped" in r.output
    saved = json.loads((out / "checkpoint-1" / "training_config.json").read_text())
    assert saved["beta"] == 0.3 and saved["learning_rate"] == 1e-4  # flag beats YAML
    report = json.loads((out / "data_report.json").read_text())
    assert report["rejected"][0]["record"] == "pairs.jsonl:5"


def test_cli_exits_1_when_nothing_trainable(tmp_path, tiny_model_dir):
    from longreward.cli import app

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "w1", "chosen": "w2"}\n')
    r = CliRunner().invoke(app, ["train", str(bad), "--model", str(tiny_model_dir),
                                 "--output-dir", str(tmp_path / "o")])
    assert r.exit_code == 1
    assert "bad.jsonl:1" in r.output


def test_batches_of_two_with_accumulation(tmp_path, tiny_model_dir, pairs_file):
    cfg = _cfg(tmp_path, tiny_model_dir, pairs_file, batch_size=2, grad_accum=2, max_steps=2,
               attention="split_lse")
    res = train(cfg, log=lambda _m: None)
    assert res.steps == 2
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["packed_tokens"] > 0 for r in rows)
    assert rows[-1]["rewards/margins"] > rows[0]["rewards/margins"]
