"""Training configuration: one dataclass that the CLI flags and the YAML file both map onto.

Defaults follow LongReward §4.1 (DPO with an extra cross-entropy term on the chosen answer,
β = 0.15, λ = 0.1, lr = 1e-6). Everything else (schedule, warmup, clipping) is not given in the
paper; the defaults are ordinary DPO practice and are marked as ours in their help text.

This module must not import torch: the CLI builds a ``TrainConfig`` before deciding whether the
training stack is installed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ATTENTION_BACKENDS: tuple[str, ...] = ("auto", "eager_mask", "flex", "split", "split_lse")
SCHEDULERS: tuple[str, ...] = ("cosine", "linear", "constant", "constant_with_warmup")


@dataclass
class TrainConfig:
    """Options of ``longreward train``. Field names are the YAML keys; CLI flags use dashes."""

    # -- data ---------------------------------------------------------------------------------
    pairs: str = field(default="", metadata={"help": "Pair file (JSONL or Parquet) as written by `longreward pairs`, or plain prompt/chosen/rejected rows."})
    format: str = field(default="auto", metadata={"help": "Pair format: auto, trl, trl_standard, openrlhf, sharegpt."})
    prompt_key: str = field(default="prompt", metadata={"help": "Prompt column for the openrlhf format."})
    chosen_key: str = field(default="chosen", metadata={"help": "Chosen column for the openrlhf format."})
    rejected_key: str = field(default="rejected", metadata={"help": "Rejected column for the openrlhf format."})
    max_length: int = field(default=65536, metadata={"help": "Maximum tokens of prompt + the longer answer (the length of one ordinary DPO sequence). Longer prompts are cut in the middle of their longest user message."})
    max_answer_length: int = field(default=0, metadata={"help": "Cut answers longer than this many tokens (0: never cut answers). Cut answers lose their EOS; counted and reported."})
    # -- model --------------------------------------------------------------------------------
    model: str = field(default="", metadata={"help": "Hugging Face model name or local path (policy; also the reference)."})
    output_dir: str = field(default="", metadata={"help": "Where checkpoints, metrics.jsonl and the reference cache go."})
    attention: str = field(default="auto", metadata={"help": "Shared-prefix attention: auto (split on CUDA, eager_mask on CPU), eager_mask, flex, split, split_lse."})
    gradient_checkpointing: bool = field(default=True, metadata={"help": "Recompute decoder layers in backward to save memory."})
    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision (default: on when CUDA is available)."})
    model_dtype: str = field(default="float32", metadata={"help": "Dtype of the trained weights: float32 (fp32 master weights, bf16 autocast when bf16 is on) or bfloat16 (pure bf16: half the memory, but updates at lr 1e-6 are mostly below bf16 precision)."})
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all weights; the reference is then the base model with adapters disabled."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout (0 keeps the policy at step 0 equal to the reference)."})
    lora_target_modules: str = field(default="all-linear", metadata={"help": "Comma-separated module names, or all-linear."})
    # -- loss (paper §4.1) --------------------------------------------------------------------
    beta: float = field(default=0.15, metadata={"help": "DPO β (paper: 0.15)."})
    ce_weight: float = field(default=0.1, metadata={"help": "λ, weight of the token-mean NLL of the chosen answer (paper: 0.1)."})
    # -- optimisation -------------------------------------------------------------------------
    learning_rate: float = field(default=1e-6, metadata={"help": "Peak learning rate (paper: 1e-6)."})
    num_epochs: float = field(default=1.0, metadata={"help": "Passes over the pairs (ignored when max_steps > 0)."})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps to run; -1 derives it from num_epochs."})
    batch_size: int = field(default=1, metadata={"help": "Pairs per micro-batch per device (each pair is one packed sequence)."})
    grad_accum: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Fraction of steps with linear warmup (ours; the paper does not say)."})
    scheduler: str = field(default="cosine", metadata={"help": "LR schedule after warmup: cosine, linear, constant, constant_with_warmup."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    seed: int = field(default=42, metadata={"help": "Seed for shuffling and initialisation."})
    logits_chunk: int = field(default=1024, metadata={"help": "Response positions per log-softmax chunk (bounds the vocab-sized fp32 buffer)."})
    # -- bookkeeping --------------------------------------------------------------------------
    log_every: int = field(default=1, metadata={"help": "Print metrics every N optimizer steps (metrics.jsonl gets every step)."})
    save_every: int = field(default=0, metadata={"help": "Checkpoint every N optimizer steps (0: only at the end)."})
    resume_from: str | None = field(default=None, metadata={"help": "Checkpoint directory to resume from (or 'latest' for the newest in output_dir)."})
    ref_cache: str | None = field(default=None, metadata={"help": "Reference log-prob cache file (default: <output_dir>/ref_logps-<key>.pt)."})
    report_to: str = field(default="none", metadata={"help": "Extra tracker: none, tensorboard, wandb (needs the package installed)."})

    def validate(self) -> None:
        problems = []
        if not self.pairs:
            problems.append("pairs: a pair file is required")
        if not self.model:
            problems.append("model: --model NAME_OR_PATH is required")
        if not self.output_dir:
            problems.append("output_dir: --output-dir DIR is required")
        if self.attention not in ATTENTION_BACKENDS:
            problems.append(f"attention: {self.attention!r} is not one of {', '.join(ATTENTION_BACKENDS)}")
        if self.scheduler not in SCHEDULERS:
            problems.append(f"scheduler: {self.scheduler!r} is not one of {', '.join(SCHEDULERS)}")
        if self.batch_size < 1 or self.grad_accum < 1:
            problems.append("batch_size and grad_accum must be >= 1")
        if self.max_length < 16:
            problems.append("max_length must be >= 16")
        if self.model_dtype not in ("float32", "bfloat16"):
            problems.append(f"model_dtype: {self.model_dtype!r} is not float32 or bfloat16")
        if self.beta <= 0:
            problems.append("beta must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("warmup_ratio must be in [0, 1)")
        if problems:
            raise ValueError("invalid training config:\n  " + "\n  ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_field_names() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


def load_train_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Build a config from an optional YAML file, then ``overrides`` (CLI flags) on top.

    ``None`` overrides mean "not given on the command line" and leave the YAML value alone.
    Unknown YAML keys are an error, so a misspelt option never silently does nothing.
    """
    values: dict[str, Any] = {}
    if path is not None:
        import yaml

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of option: value")
        # A pipeline config (``longreward run``) keeps training options under ``train:``.
        if isinstance(data.get("train"), dict):
            data = data["train"]
        # Accept dashed keys too, so a YAML file can be written with the CLI's spelling.
        data = {str(k).replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(data) - set(config_field_names()))
        if unknown:
            raise ValueError(f"{path}: unknown option(s) {', '.join(unknown)}; valid options: "
                             f"{', '.join(config_field_names())}")
        values.update(data)
    unknown = sorted(set(overrides) - set(config_field_names()))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)
