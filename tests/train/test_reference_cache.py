"""The reference log-prob cache key changes exactly when the reference numbers would."""

from __future__ import annotations

import shutil

from lr_train_helpers import make_model, make_tokenizer

from longreward.train import TrainConfig
from longreward.train.reference import reference_cache_key


def _key(model_dir, pairs_file, tok=None, **kw) -> str:
    cfg = TrainConfig(pairs=str(pairs_file), model=str(model_dir), output_dir="o", **kw)
    from transformers import AutoConfig

    return reference_cache_key(cfg, AutoConfig.from_pretrained(model_dir).to_dict(),
                               tok or make_tokenizer())


def test_key_follows_weights_data_and_lengths_not_hyperparameters(tmp_path, tiny_model_dir, pairs_file):
    base = _key(tiny_model_dir, pairs_file)
    # Training hyper-parameters, LoRA (the reference is the base model either way) and where
    # the same weights live do not change the reference.
    assert _key(tiny_model_dir, pairs_file, learning_rate=1e-3, beta=0.5, lora=True,
                grad_accum=4, seed=1, resume_from="latest") == base
    copy = tmp_path / "elsewhere" / "same-model"
    shutil.copytree(tiny_model_dir, copy)
    assert _key(copy, pairs_file) == base
    # Data, lengths, tokenizer and weights do.
    assert _key(tiny_model_dir, pairs_file, max_length=64) != base
    assert _key(tiny_model_dir, pairs_file, max_answer_length=3) != base
    other_data = tmp_path / "p2.jsonl"
    other_data.write_text(pairs_file.read_text().replace("w3", "w9"))
    assert _key(tiny_model_dir, other_data) != base
    tok = make_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert _key(tiny_model_dir, pairs_file, tok=tok) != base
    # New weights written over the same directory (same config, same path): a stale cache
    # here would train against the old model's log-probs.
    make_model("llama", seed=123).save_pretrained(tiny_model_dir)
    assert _key(tiny_model_dir, pairs_file) != base
