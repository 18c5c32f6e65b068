"""Fixtures for the training tests: a word-level tokenizer with a chat template and tiny
random-init Llama / Qwen2 models built from configs (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lr_train_helpers import make_model, make_tokenizer, toy_rows  # noqa: E402


@pytest.fixture
def tokenizer():
    return make_tokenizer()


@pytest.fixture(params=["llama", "qwen2"])
def family(request):
    return request.param


@pytest.fixture
def tiny_model_dir(tmp_path: Path, tokenizer):
    """A tiny Llama saved like a hub checkpoint, for trainer and CLI tests."""
    path = tmp_path / "tiny-llama"
    make_model("llama").save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def pairs_file(tmp_path: Path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in toy_rows()), encoding="utf-8")
    return path
