"""The DPO + λ·CE training loop on 🤗 Accelerate (one GPU, DDP, FSDP or DeepSpeed ZeRO-3).

Deliberately small: our own batching (packed pairs, not a DataLoader) sharded by rank,
``accelerator.accumulate`` for gradient accumulation, AdamW, a transformers schedule stepped once
per optimizer step, and checkpoints that are both Hugging Face model directories and
``accelerator.save_state`` snapshots, so a run can be resumed or the model used directly.

Where we depart from the paper: LongReward §4.1 trains with a separate frozen reference model;
we precompute its log-probs once (reference.py), which is the same objective without holding a
second model during training.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..preference.formats import PairKeys
from .attention import register_shared_prefix_attention, resolve_backend
from .config import TrainConfig
from .data import DataReport, TokenizedPair, build_dataset
from .logprobs import answer_logps
from .loss import dpo_ce_loss
from .packing import pack_pairs
from .reference import compute_reference_logps, load_or_compute_reference, reference_cache_key


class NothingToTrainError(ValueError):
    """No pair survived reading and tokenisation."""


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    report: DataReport
    last_metrics: dict[str, float] = field(default_factory=dict)
    checkpoints: list[Path] = field(default_factory=list)


def _micro_batches(n_pairs: int, batch_size: int, seed: int, epoch: int, rank: int,
                   world: int) -> list[list[int]]:
    """This rank's micro-batches (lists of pair indices) for one epoch, in a seeded order.

    Every rank gets the same count (the last ones repeat) so collective ops stay in step.
    """
    order = list(range(n_pairs))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    batches = [order[i : i + batch_size] for i in range(0, n_pairs, batch_size)]
    per_rank = math.ceil(len(batches) / world)
    mine = batches[rank::world]
    while len(mine) < per_rank:
        mine.append(batches[(len(mine) * world + rank) % len(batches)])
    return mine


def _peak_memory_gib(device: torch.device) -> float | None:
    """Peak memory of this step: the CUDA allocator's peak on a GPU; elsewhere the process's
    peak resident set (a high-water mark for the whole run, the best the OS offers)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        import resource
        import sys
    except ImportError:  # Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**30 if sys.platform == "darwin" else rss / 2**20  # bytes on macOS, KiB on Linux


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Non-reentrant activation checkpointing of every decoder layer (transformers 5 renamed
    ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable``)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def find_latest_checkpoint(output_dir: Path) -> Path | None:
    ckpts = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return ckpts[-1] if ckpts else None


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Run training as configured; returns where things went and what happened to the data."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

    cfg.validate()
    use_bf16 = torch.cuda.is_available() if cfg.bf16 is None else cfg.bf16
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum,
                              mixed_precision="bf16" if use_bf16 else "no",
                              log_with=None if cfg.report_to == "none" else cfg.report_to,
                              project_dir=cfg.output_dir)
    is_main = accelerator.is_main_process
    say = log if is_main else (lambda _msg: None)
    set_seed(cfg.seed)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    keys = PairKeys(cfg.prompt_key, cfg.chosen_key, cfg.rejected_key)
    pairs, report = build_dataset(cfg.pairs, tokenizer, cfg.max_length, cfg.format, keys,
                                  cfg.max_answer_length)
    say(f"pairs: {report.n_pairs} of {report.n_rows} rows usable; {len(report.rejected)} rejected; "
        f"{report.n_truncated} prompts cut in the middle ({report.n_truncated_tokens} tokens)")
    for _record, reason in report.rejected:
        say(f"  skipped {reason}")  # the reason names the record and field
    if is_main:
        (out_dir / "data_report.json").write_text(json.dumps(report.to_dict(), indent=2))
    if not pairs:
        raise NothingToTrainError(f"no usable pairs in {cfg.pairs}; see the skipped records above")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    attn_name = register_shared_prefix_attention()
    dtype = torch.bfloat16 if cfg.model_dtype == "bfloat16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype, attn_implementation=attn_name)
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        enable_checkpointing(model)
    ref_key = reference_cache_key(cfg, model.config.to_dict(), tokenizer,
                                  commit=getattr(model.config, "_commit_hash", None))
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        targets: Any = (cfg.lora_target_modules if cfg.lora_target_modules == "all-linear"
                        else [t.strip() for t in cfg.lora_target_modules.split(",") if t.strip()])
        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                 lora_dropout=cfg.lora_dropout,
                                                 target_modules=targets, task_type="CAUSAL_LM"))
    backend = resolve_backend(cfg.attention, accelerator.device)
    say(f"attention: {backend}; device: {accelerator.device}; processes: {accelerator.num_processes}")

    world, rank = accelerator.num_processes, accelerator.process_index
    micro_per_epoch = math.ceil(math.ceil(len(pairs) / cfg.batch_size) / world)
    steps_per_epoch = max(math.ceil(micro_per_epoch / cfg.grad_accum), 1)
    total_steps = cfg.max_steps if cfg.max_steps > 0 else max(math.ceil(cfg.num_epochs * steps_per_epoch), 1)

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    # The scheduler is stepped by us once per optimizer step (not prepared, since accelerate
    # would step it once per process), and registered so save_state/load_state include it.
    scheduler = get_scheduler(cfg.scheduler, optimizer,
                              num_warmup_steps=math.ceil(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    # Reference log-probs come from the initial weights, so they are computed before any resume
    # state is loaded.
    ref_path = Path(cfg.ref_cache) if cfg.ref_cache else out_dir / f"ref_logps-{ref_key}.pt"
    unwrapped = accelerator.unwrap_model(model)
    ref = load_or_compute_reference(
        ref_path, ref_key, pairs,
        lambda: compute_reference_logps(model, pairs, backend, accelerator.device,
                                        cfg.logits_chunk, accelerator, adapter_model=unwrapped),
        is_main=is_main, log=say)
    accelerator.wait_for_everyone()

    step, skip_micro = 0, 0
    if cfg.resume_from:
        ckpt = find_latest_checkpoint(out_dir) if cfg.resume_from == "latest" else Path(cfg.resume_from)
        if ckpt is None or not (ckpt / "state").is_dir():
            raise FileNotFoundError(f"no resumable checkpoint at {cfg.resume_from!r}; expected a "
                                    "checkpoint-N directory with a state/ folder")
        accelerator.load_state(str(ckpt / "state"))
        step = json.loads((ckpt / "trainer_state.json").read_text())["global_step"]
        skip_micro = step * cfg.grad_accum
        say(f"resumed from {ckpt} at step {step}")

    if accelerator.trackers == [] and cfg.report_to != "none":
        accelerator.init_trackers("longreward-train", config=cfg.to_dict())
    metrics_path = out_dir / "metrics.jsonl"
    result = TrainResult(out_dir, step, report)
    model.train()
    micro_seen = 0
    epoch = 0
    pending: list[dict[str, float]] = []
    tokens = 0
    grad_norm: Any = 0.0
    t0 = time.perf_counter()
    if accelerator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(accelerator.device)
    while step < total_steps:
        for idx in _micro_batches(len(pairs), cfg.batch_size, cfg.seed, epoch, rank, world):
            if step >= total_steps:
                break
            micro_seen += 1
            if micro_seen <= skip_micro:
                continue
            batch = pack_pairs([pairs[i] for i in idx], pad_id).to(accelerator.device)
            ref_c = ref["chosen"][idx].to(accelerator.device)
            ref_r = ref["rejected"][idx].to(accelerator.device)
            with accelerator.accumulate(model), accelerator.autocast():
                lp = answer_logps(model, batch, backend, cfg.logits_chunk)
                out = dpo_ce_loss(lp.chosen, lp.rejected, ref_c, ref_r, lp.chosen_tokens,
                                  cfg.beta, cfg.ce_weight)
                accelerator.backward(out.loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    # model.parameters() after prepare: FSDP only clips through its own (flat) params.
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            pending.append(out.metrics())
            tokens += batch.num_tokens
            if not accelerator.sync_gradients:
                continue
            lr_used = scheduler.get_last_lr()[0]  # the rate this step's update was made with
            scheduler.step()
            step += 1
            elapsed = time.perf_counter() - t0
            row = {k: sum(m[k] for m in pending) / len(pending) for k in pending[0]}
            row.update(step=step, epoch=epoch, lr=lr_used,
                       tokens_per_s=tokens * world / max(elapsed, 1e-9), step_time_s=elapsed,
                       packed_tokens=tokens)
            if cfg.max_grad_norm > 0 and grad_norm is not None:  # DeepSpeed clips inside its engine
                row["grad_norm"] = float(grad_norm)
            peak = _peak_memory_gib(accelerator.device)
            if peak is not None:
                row["peak_mem_gib"] = peak
            result.last_metrics = row
            if is_main:
                with metrics_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
                if step % max(cfg.log_every, 1) == 0 or step == total_steps:
                    say(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in row.items()))
            if cfg.report_to != "none":
                accelerator.log(row, step=step)
            if cfg.save_every > 0 and step % cfg.save_every == 0 and step < total_steps:
                result.checkpoints.append(save_checkpoint(accelerator, model, tokenizer, cfg, step))
            pending, tokens = [], 0
            t0 = time.perf_counter()
            if accelerator.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(accelerator.device)
        epoch += 1
    result.steps = step
    result.checkpoints.append(save_checkpoint(accelerator, model, tokenizer, cfg, step))
    accelerator.end_training()
    return result


def save_checkpoint(accelerator: Any, model: torch.nn.Module, tokenizer: Any, cfg: TrainConfig,
                    step: int) -> Path:
    """``checkpoint-<step>/``: an HF model dir (adapter only with LoRA) + tokenizer +
    ``training_config.json`` + ``trainer_state.json``, and ``state/`` for exact resume."""
    path = Path(cfg.output_dir) / f"checkpoint-{step}"
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path / "state"))
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(path, is_main_process=accelerator.is_main_process,
                              save_function=accelerator.save,
                              state_dict=accelerator.get_state_dict(model))
    if accelerator.is_main_process:
        tokenizer.save_pretrained(path)
        (path / "training_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    accelerator.wait_for_everyone()
    return path


def load_pairs_for_training(cfg: TrainConfig, tokenizer: Any) -> tuple[list[TokenizedPair], DataReport]:
    """The dataset exactly as :func:`train` builds it (used by the benchmark)."""
    keys = PairKeys(cfg.prompt_key, cfg.chosen_key, cfg.rejected_key)
    return build_dataset(cfg.pairs, tokenizer, cfg.max_length, cfg.format, keys,
                         cfg.max_answer_length)
