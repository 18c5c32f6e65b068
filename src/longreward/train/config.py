"""Training configuration: one pydantic model that the CLI flags, a YAML file and the ``train:``
section of a ``longreward run`` config all map onto (``extra="forbid"``, as the other options).

Defaults follow LongReward §4.1 (DPO with an extra cross-entropy term on the chosen answer,
β = 0.15, λ = 0.1, lr = 1e-6). Everything else (schedule, warmup, clipping) is not given in the
paper; the defaults are ordinary DPO practice and are marked as ours in their help text. Each
field's description is the help text of its CLI flag.

This module must not import torch: the CLI builds a ``TrainConfig`` before deciding whether the
training stack is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError
from ..preference.formats import PAIR_FORMATS, check_pair_format

ATTENTION_BACKENDS: tuple[str, ...] = ("auto", "eager_mask", "flex", "split", "split_lse")
SCHEDULERS: tuple[str, ...] = ("cosine", "linear", "constant", "constant_with_warmup")

Attention = Literal["auto", "eager_mask", "flex", "split", "split_lse"]
Scheduler = Literal["cosine", "linear", "constant", "constant_with_warmup"]


class TrainConfig(BaseModel):
    """Options of ``longreward train``. Field names are the YAML keys; CLI flags use dashes."""

    # ``model_dtype`` starts with pydantic's reserved ``model_`` prefix; it is ours.
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_assignment=True)

    # -- data ---------------------------------------------------------------------------------
    pairs: str = Field("", description="Pair file (JSONL/JSON/Parquet) as written by `longreward pairs`, or plain prompt/chosen/rejected rows.")
    format: str = Field("auto", description=f"Pair format: auto (told apart per row), {', '.join(PAIR_FORMATS)}.")
    prompt_key: str = Field("prompt", description="Prompt column for the openrlhf format.")
    chosen_key: str = Field("chosen", description="Chosen column for the openrlhf format.")
    rejected_key: str = Field("rejected", description="Rejected column for the openrlhf format.")
    max_length: int = Field(65536, ge=16, description="Maximum tokens of prompt + the longer answer (the length of one ordinary DPO sequence). Longer prompts are cut in the middle of their longest user message.")
    max_answer_length: int = Field(0, ge=0, description="Cut answers longer than this many tokens (0: never cut answers). Cut answers lose their end-of-turn token; counted and reported.")
    eval_file: str | None = Field(None, description="Pair file to evaluate on (same formats); eval metrics are logged as eval_* rows in metrics.jsonl.")
    eval_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Hold out this fraction of the pairs (seeded) as the eval set instead of --eval-file.")
    eval_every: int = Field(0, ge=0, description="Evaluate every N optimizer steps (0: only after the last step). Needs --eval-file or --eval-fraction.")
    # -- model --------------------------------------------------------------------------------
    model: str = Field("", description="Policy (also the reference): a local model directory, a .gguf file (loaded through transformers, needs the gguf package), or a Hugging Face Hub name.")
    output_dir: str = Field("", description="Where checkpoints, metrics.jsonl and the reference cache go.")
    attention: Attention = Field("auto", description="Shared-prefix attention: auto (split on CUDA, eager_mask on CPU), eager_mask, flex, split, split_lse.")
    gradient_checkpointing: bool = Field(True, description="Recompute decoder layers in backward to save memory.")
    bf16: bool | None = Field(None, description="bf16 mixed precision (default: on when CUDA is available).")
    model_dtype: Literal["float32", "bfloat16"] = Field("float32", description="Dtype of the trained weights: float32 (fp32 master weights, bf16 autocast when bf16 is on) or bfloat16 (pure bf16: half the memory, but updates at lr 1e-6 are mostly below bf16 precision).")
    lora: bool = Field(False, description="Train LoRA adapters instead of all weights; the reference is then the base model with adapters disabled.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha.")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="LoRA dropout (0 keeps the policy at step 0 equal to the reference).")
    lora_target_modules: str = Field("all-linear", description="Comma-separated module names, or all-linear.")
    lora_merge: bool = Field(True, description="With LoRA, also save the last checkpoint's weights merged into the base model, in checkpoint-N/merged (a plain model directory that transformers, vLLM or `longreward sample` load).")
    # -- loss (paper §4.1) --------------------------------------------------------------------
    beta: float = Field(0.15, gt=0, description="DPO β (paper: 0.15).")
    ce_weight: float = Field(0.1, ge=0, description="λ, weight of the token-mean NLL of the chosen answer (paper: 0.1).")
    # -- optimisation -------------------------------------------------------------------------
    learning_rate: float = Field(1e-6, gt=0, description="Peak learning rate (paper: 1e-6).")
    num_epochs: float = Field(1.0, gt=0, description="Passes over the pairs (ignored when max_steps > 0).")
    max_steps: int = Field(-1, description="Optimizer steps to run; -1 derives it from num_epochs.")
    batch_size: int = Field(1, ge=1, description="Pairs per micro-batch per device (each pair is one packed sequence).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0, description="Fraction of steps with linear warmup (ours; the paper does not say).")
    scheduler: Scheduler = Field("cosine", description="LR schedule after warmup: cosine, linear, constant, constant_with_warmup.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 disables).")
    seed: int = Field(42, description="Seed for shuffling, the eval split and initialisation.")
    logits_chunk: int = Field(1024, ge=1, description="Response positions per log-softmax chunk (bounds the vocab-sized fp32 buffer).")
    # -- bookkeeping --------------------------------------------------------------------------
    log_every: int = Field(1, ge=1, description="Print metrics every N optimizer steps (metrics.jsonl gets every step).")
    save_every: int = Field(0, ge=0, description="Checkpoint every N optimizer steps (0: only at the end).")
    resume_from: str | None = Field(None, description="Checkpoint directory to resume from (or 'latest' for the newest in output_dir).")
    ref_cache: str | None = Field(None, description="Reference log-prob cache file (default: <output_dir>/ref_logps-<key>.pt).")
    report_to: Literal["none", "tensorboard", "wandb"] = Field("none", description="Extra tracker: none, tensorboard, wandb (needs the package installed).")

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        return check_pair_format(v, auto=True)

    @model_validator(mode="before")
    @classmethod
    def _dashed_keys(cls, data: Any) -> Any:
        # A YAML file may use the CLI's spelling (max-length) as well as the field's.
        if isinstance(data, dict):
            return {str(k).replace("-", "_"): v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _one_eval_source(self) -> TrainConfig:
        if self.eval_file and self.eval_fraction > 0:
            raise ValueError("give eval_file or eval_fraction, not both")
        if self.eval_every and not (self.eval_file or self.eval_fraction > 0):
            raise ValueError("eval_every needs an eval set: eval_file or eval_fraction")
        return self

    def require_complete(self) -> None:
        """The fields a run cannot do without (a ``run`` config fills ``pairs`` itself, so they
        are checked when training starts, not when the model is built)."""
        missing = [f"{name}: {what}" for name, what in (
            ("pairs", "a pair file is required"),
            ("model", "--model DIR_OR_GGUF_OR_NAME is required"),
            ("output_dir", "--output-dir DIR is required"),
        ) if not getattr(self, name)]
        if missing:
            raise ConfigError("invalid training config:\n  " + "\n  ".join(missing))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def config_field_names() -> list[str]:
    return list(TrainConfig.model_fields)


def load_train_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Build a config from an optional YAML/TOML file, then ``overrides`` (CLI flags) on top.

    ``None`` overrides mean "not given on the command line" and leave the file's value alone.
    A pipeline config (``longreward run``) keeps training options under ``train:``; that
    section is read when present. Unknown keys are an error, so a misspelt option never
    silently does nothing.
    """
    from ..config import load_config_file

    values: dict[str, Any] = {}
    where = "options"
    if path is not None:
        data = load_config_file(path)
        if isinstance(data.get("train"), dict):
            data = data["train"]
        values.update({str(k).replace("-", "_"): v for k, v in data.items()})
        where = str(path)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "config"
            msg = e["msg"]
            if e["type"] == "extra_forbidden":
                msg = f"unknown option; valid options: {', '.join(config_field_names())}"
            lines.append(f"  {loc}: {msg}")
        raise ConfigError(f"invalid training config ({where}):\n" + "\n".join(lines)) from None
