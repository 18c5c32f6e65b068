"""Long-context DPO + λ·CE training with a shared-prefix forward pass (``longreward train``).

Importing this package does not import torch; the names below load their module on first use,
so ``longreward`` stays usable without the ``[train]`` extra.

Public API::

    from longreward.train import TrainConfig, train, dpo_loss, dpo_ce_loss
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import ATTENTION_BACKENDS, TrainConfig, load_train_config

_LAZY = {
    "train": "trainer", "TrainResult": "trainer", "NothingToTrainError": "trainer",
    "dpo_loss": "loss", "dpo_ce_loss": "loss", "chosen_nll": "loss", "LossOutput": "loss",
    "implicit_rewards": "loss",
    "pack_pairs": "packing", "PackedBatch": "packing", "Segments": "packing",
    "SharedPrefixSpec": "packing",
    "answer_logps": "logprobs", "AnswerLogps": "logprobs",
    "ATTENTION_NAME": "attention", "register_shared_prefix_attention": "attention",
    "merged_prefix_attention": "attention",
    "build_dataset": "data", "TokenizedPair": "data", "DataReport": "data",
    "ChatTokens": "data",
    "resolve_model": "model_source", "ModelSource": "model_source",
}

__all__ = ["ATTENTION_BACKENDS", "TrainConfig", "load_train_config", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
