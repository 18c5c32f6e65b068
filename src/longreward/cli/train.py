"""``longreward train``: DPO + λ·CE on preference pairs with a shared-prefix forward pass.

Torch, transformers, accelerate and peft are imported inside the command only, so the rest of
the CLI works without the ``[train]`` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import app


@app.command("train")
def train_command(
    pairs: Annotated[Path | None, typer.Argument(help="Pair file (JSONL/Parquet) from `longreward pairs`, or prompt/chosen/rejected rows.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="HF model name or local path.")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Checkpoints, metrics.jsonl, reference cache.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file with TrainConfig options (flags override it).")] = None,
    beta: Annotated[float | None, typer.Option(help="DPO β (paper: 0.15).")] = None,
    ce_weight: Annotated[float | None, typer.Option("--ce-weight", help="λ for the chosen-answer NLL (paper: 0.1).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (paper: 1e-6).")] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Passes over the data.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Optimizer steps (overrides --epochs).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Packed pairs per micro-batch per device.")] = None,
    grad_accum: Annotated[int | None, typer.Option("--grad-accum", help="Micro-batches per optimizer step.")] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="Max tokens of prompt + longer answer; longer prompts are cut in the middle.")] = None,
    max_answer_length: Annotated[int | None, typer.Option("--max-answer-length", help="Cut answers beyond this many tokens (0: never).")] = None,
    warmup_ratio: Annotated[float | None, typer.Option("--warmup-ratio")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="cosine, linear, constant, constant_with_warmup.")] = None,
    lora: Annotated[bool | None, typer.Option("--lora/--no-lora", help="Train LoRA adapters.")] = None,
    lora_r: Annotated[int | None, typer.Option("--lora-r")] = None,
    lora_alpha: Annotated[int | None, typer.Option("--lora-alpha")] = None,
    gradient_checkpointing: Annotated[bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")] = None,
    bf16: Annotated[bool | None, typer.Option("--bf16/--no-bf16", help="bf16 autocast (default: on with CUDA).")] = None,
    model_dtype: Annotated[str | None, typer.Option("--model-dtype", help="float32 (master weights) or bfloat16.")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    attention: Annotated[str | None, typer.Option("--attention", help="auto, eager_mask, flex, split, split_lse.")] = None,
    resume_from: Annotated[str | None, typer.Option("--resume-from", help="checkpoint-N directory, or 'latest'.")] = None,
    log_every: Annotated[int | None, typer.Option("--log-every")] = None,
    save_every: Annotated[int | None, typer.Option("--save-every", help="Checkpoint every N steps (0: at the end).")] = None,
    ref_cache: Annotated[Path | None, typer.Option("--ref-cache", help="Reference log-prob cache file.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="auto, trl, trl_standard, openrlhf, sharegpt.")] = None,
    prompt_key: Annotated[str | None, typer.Option("--prompt-key", help="openrlhf prompt column.")] = None,
    chosen_key: Annotated[str | None, typer.Option("--chosen-key", help="openrlhf chosen column.")] = None,
    rejected_key: Annotated[str | None, typer.Option("--rejected-key", help="openrlhf rejected column.")] = None,
    report_to: Annotated[str | None, typer.Option("--report-to", help="none, tensorboard, wandb.")] = None,
) -> None:
    """Train a policy with DPO + λ·CE on long-context preference pairs (LongReward §4.1)."""
    from ..train.config import load_train_config

    try:
        cfg = load_train_config(
            config, pairs=str(pairs) if pairs else None, model=model,
            output_dir=str(output_dir) if output_dir else None, beta=beta, ce_weight=ce_weight,
            learning_rate=lr, num_epochs=epochs, max_steps=max_steps, batch_size=batch_size,
            grad_accum=grad_accum, max_length=max_length, max_answer_length=max_answer_length,
            warmup_ratio=warmup_ratio, scheduler=scheduler, lora=lora, lora_r=lora_r,
            lora_alpha=lora_alpha, gradient_checkpointing=gradient_checkpointing, bf16=bf16,
            model_dtype=model_dtype, seed=seed, attention=attention, resume_from=resume_from,
            log_every=log_every, save_every=save_every,
            ref_cache=str(ref_cache) if ref_cache else None, format=fmt, prompt_key=prompt_key,
            chosen_key=chosen_key, rejected_key=rejected_key, report_to=report_to)
        cfg.validate()
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    missing = [m for m in ("torch", "transformers", "accelerate") + (("peft",) if cfg.lora else ())
               if not _importable(m)]
    if missing:
        typer.echo(f"error: `longreward train` needs {', '.join(missing)}, which is not installed. "
                   "Fix: pip install 'longreward[train]'", err=True)
        raise typer.Exit(2)

    from ..train.trainer import NothingToTrainError, train

    try:
        result = train(cfg, log=typer.echo)
    except NothingToTrainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    r = result.report
    typer.echo(f"done: {result.steps} steps on {r.n_pairs} pairs ({len(r.rejected)} rows skipped, "
               f"{r.n_truncated} prompts truncated); model in {result.checkpoints[-1]}")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
