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

from ..errors import LongRewardError
from ..preference.formats import PairKeys
from ..text.tokenizers import trained_window
from .attention import register_shared_prefix_attention, resolve_backend
from .config import TrainConfig
from .data import DataReport, TokenizedPair, build_dataset
from .logprobs import answer_logps
from .loss import dpo_ce_loss
from .model_source import ModelSource, resolve_model
from .packing import pack_pairs
from .reference import compute_reference_logps, load_or_compute_reference, reference_cache_key


class NothingToTrainError(LongRewardError, ValueError):
    """No pair survived reading and tokenisation."""


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    report: DataReport
    last_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)  # the last evaluation
    checkpoints: list[Path] = field(default_factory=list)
    merged: Path | None = None  # LoRA weights merged into the base model (lora_merge)


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


def split_eval(pairs: list[TokenizedPair], fraction: float,
               seed: int) -> tuple[list[TokenizedPair], list[TokenizedPair]]:
    """``(train, eval)``: a seeded ``fraction`` of the pairs held out (at least one, and at
    least one left to train on); records keep their file order within each side."""
    if fraction <= 0:
        return pairs, []
    if len(pairs) < 2:
        raise NothingToTrainError(f"--eval-fraction needs at least 2 usable pairs, got "
                                  f"{len(pairs)}; drop --eval-fraction or add pairs")
    n_eval = min(max(round(fraction * len(pairs)), 1), len(pairs) - 1)
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return ([p for i, p in enumerate(pairs) if i not in held],
            [p for i, p in enumerate(pairs) if i in held])


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Run training as configured; returns where things went and what happened to the data."""
    cfg.require_complete()
    # Before torch, accelerate and the weights: a --model that cannot be had fails now.
    source = resolve_model(cfg.model)

    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_scheduler

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

    tokenizer = source.load_tokenizer()
    pairs, report = load_pairs_for_training(cfg, tokenizer)
    _say_report(say, cfg.pairs, report)
    eval_pairs: list[TokenizedPair] = []
    eval_report: DataReport | None = None
    if cfg.eval_file:
        eval_pairs, eval_report = load_pairs_for_training(cfg, tokenizer, cfg.eval_file)
        _say_report(say, cfg.eval_file, eval_report)
    if is_main:
        blob = report.to_dict()
        if eval_report is not None:
            blob["eval"] = eval_report.to_dict()
        (out_dir / "data_report.json").write_text(json.dumps(blob, indent=2))
    if not pairs:
        raise NothingToTrainError(f"no usable pairs in {cfg.pairs}; see the skipped records above")
    if cfg.eval_file and not eval_pairs:
        raise NothingToTrainError(f"no usable pairs in the eval file {cfg.eval_file}; see the "
                                  "skipped records above")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    attn_name = register_shared_prefix_attention()
    dtype = torch.bfloat16 if cfg.model_dtype == "bfloat16" else torch.float32
    model = source.load_model(dtype=dtype, attn_implementation=attn_name)
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        enable_checkpointing(model)
    model_config = model.config.to_dict()
    warning = window_warning(model_config, [*pairs, *eval_pairs])
    if warning:
        say(warning)
    commit = getattr(model.config, "_commit_hash", None)
    ref_key = reference_cache_key(cfg, model_config, tokenizer, commit=commit)
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        targets: Any = (cfg.lora_target_modules if cfg.lora_target_modules == "all-linear"
                        else [t.strip() for t in cfg.lora_target_modules.split(",") if t.strip()])
        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                 lora_dropout=cfg.lora_dropout,
                                                 target_modules=targets, task_type="CAUSAL_LM"))
    backend = resolve_backend(cfg.attention, accelerator.device)
    say(f"attention: {backend}; device: {accelerator.device}; processes: {accelerator.num_processes}")

    all_pairs = pairs
    if cfg.eval_fraction > 0:
        pairs, eval_pairs = split_eval(all_pairs, cfg.eval_fraction, cfg.seed)
        say(f"eval: {len(eval_pairs)} pairs held out ({cfg.eval_fraction:g}), "
            f"{len(pairs)} to train on")

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
    unwrapped = accelerator.unwrap_model(model)

    def logps_of(subset: list[TokenizedPair], adapters: bool = False) -> dict[str, torch.Tensor]:
        return compute_reference_logps(model, subset, backend, accelerator.device,
                                       cfg.logits_chunk, accelerator, adapter_model=unwrapped,
                                       adapters=adapters)

    # Reference log-probs come from the initial weights, so they are computed before any resume
    # state is loaded. With --eval-fraction they cover the whole file (one cache), then split.
    ref_path = Path(cfg.ref_cache) if cfg.ref_cache else out_dir / f"ref_logps-{ref_key}.pt"
    ref = load_or_compute_reference(ref_path, ref_key, all_pairs, lambda: logps_of(all_pairs),
                                    is_main=is_main, log=say)
    eval_ref: dict[str, torch.Tensor] | None = None
    if cfg.eval_fraction > 0:
        row_of = {p.record: i for i, p in enumerate(all_pairs)}
        eval_ref = _take(ref, [row_of[p.record] for p in eval_pairs])
        ref = _take(ref, [row_of[p.record] for p in pairs])
    elif eval_pairs:
        eval_key = reference_cache_key(cfg, model_config, tokenizer, commit=commit,
                                       data=cfg.eval_file)
        eval_ref = load_or_compute_reference(
            out_dir / f"ref_logps-eval-{eval_key}.pt", eval_key, eval_pairs,
            lambda: logps_of(eval_pairs), is_main=is_main, log=say)
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

    def emit(row: dict[str, Any], force: bool = False) -> None:
        if is_main:
            with metrics_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            if force or row["step"] % cfg.log_every == 0 or row["step"] == total_steps:
                say(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in row.items()))
        if cfg.report_to != "none":
            accelerator.log(row, step=row["step"])

    def evaluate() -> None:
        # TRL's names with its ``eval_`` prefix; over the whole eval set at once (the DPO loss
        # a mean over pairs, the NLL a mean over all chosen tokens), not a mean of batch means.
        assert eval_ref is not None
        lp = logps_of(eval_pairs, adapters=True)
        tokens = torch.tensor([len(p.chosen_ids) for p in eval_pairs])
        out = dpo_ce_loss(lp["chosen"], lp["rejected"], eval_ref["chosen"],
                          eval_ref["rejected"], tokens, cfg.beta, cfg.ce_weight)
        row = {"step": step, "epoch": step / steps_per_epoch,
               **{f"eval_{k}": v for k, v in out.metrics().items()},
               "eval_pairs": len(eval_pairs)}
        result.eval_metrics = row
        emit(row, force=True)

    model.train()
    micro_seen = 0
    epoch = 0
    pending: list[dict[str, float]] = []
    tokens = tokens_two = 0
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
            tokens_two += batch.num_tokens_two_sequences
            if not accelerator.sync_gradients:
                continue
            lr_used = scheduler.get_last_lr()[0]  # the rate this step's update was made with
            scheduler.step()
            step += 1
            elapsed = time.perf_counter() - t0
            row: dict[str, Any] = {"step": step, "epoch": step / steps_per_epoch}
            row.update({k: sum(m[k] for m in pending) / len(pending) for k in pending[0]})
            row["learning_rate"] = lr_used
            if cfg.max_grad_norm > 0 and grad_norm is not None:  # DeepSpeed clips inside its engine
                row["grad_norm"] = float(grad_norm)
            # Throughput two ways: tokens we ran (the prompt once per pair) and tokens an
            # ordinary DPO trainer runs for the same pairs (the prompt twice), per second.
            row.update(tokens_per_s=tokens * world / max(elapsed, 1e-9),
                       tokens_per_s_trl=tokens_two * world / max(elapsed, 1e-9),
                       packed_tokens=tokens, step_time_s=elapsed)
            peak = _peak_memory_gib(accelerator.device)
            if peak is not None:
                row["peak_mem_gib"] = peak
            result.last_metrics = row
            emit(row)
            if eval_pairs and cfg.eval_every and step % cfg.eval_every == 0 and step < total_steps:
                evaluate()
                model.train()
            if cfg.save_every > 0 and step % cfg.save_every == 0 and step < total_steps:
                result.checkpoints.append(save_checkpoint(accelerator, model, tokenizer, cfg, step))
            pending, tokens, tokens_two = [], 0, 0
            t0 = time.perf_counter()
            if accelerator.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(accelerator.device)
        epoch += 1
    result.steps = step
    if eval_pairs:
        evaluate()
    last = save_checkpoint(accelerator, model, tokenizer, cfg, step)
    result.checkpoints.append(last)
    if cfg.lora and cfg.lora_merge:
        result.merged = save_merged(accelerator, model, tokenizer, last / "merged")
        say(f"LoRA merged into the base model: {result.merged}")
    accelerator.end_training()
    return result


def _take(ref: dict[str, torch.Tensor], rows: list[int]) -> dict[str, torch.Tensor]:
    return {k: v[rows] for k, v in ref.items()}


def _say_report(say: Callable[[str], None], path: str, report: DataReport) -> None:
    say(f"{path}: {report.n_pairs} of {report.n_rows} rows usable; {len(report.rejected)} "
        f"rejected; {report.n_truncated} prompts cut in the middle "
        f"({report.n_truncated_tokens} tokens)")
    for _record, reason in report.rejected:
        say(f"  skipped {reason}")  # the reason names the record and field
    if report.answer_end.get("eos_appended"):
        say(f"  note: the chat template marks no end of an assistant turn; the tokenizer's EOS "
            f"was appended to the answers of {report.answer_end['eos_appended']} pairs")


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


def save_merged(accelerator: Any, model: torch.nn.Module, tokenizer: Any, path: Path) -> Path:
    """The LoRA policy as a plain model directory: adapters merged into a copy of the base
    weights (the trained model keeps its adapters)."""
    import copy

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        peft_model = accelerator.unwrap_model(model)
        merged = copy.deepcopy(peft_model).merge_and_unload()
        merged.config.use_cache = True
        merged.save_pretrained(path)
        tokenizer.save_pretrained(path)
        del merged
    accelerator.wait_for_everyone()
    return path


def window_warning(model_config: dict[str, Any], pairs: list[TokenizedPair]) -> str | None:
    """A warning when some pair is longer than the window the model was trained with. Not
    an error: extending the window by training on longer sequences (with RoPE scaling set
    in the config) is a legitimate aim, but done by accident it trains on positions the
    model has never seen."""
    found = trained_window(model_config)
    if found is None or not pairs:
        return None
    key, window = found
    lengths = [p.sequence_length for p in pairs]
    longest = max(lengths)
    if longest <= window:
        return None
    over = sum(n > window for n in lengths)
    return (f"warning: {over} pair(s) are longer than the model's {window:,}-token window "
            f"({key}), up to {longest:,} tokens; they train on positions "
            f"the model never saw. Pass --max-length {window} to cut their prompts to fit, "
            "unless extending the window is the point (with RoPE scaling in the config).")


def load_pairs_for_training(cfg: TrainConfig, tokenizer: Any,
                            path: str | None = None) -> tuple[list[TokenizedPair], DataReport]:
    """The dataset exactly as :func:`train` builds it (``path``: another pair file, e.g. the
    eval file, read with the same options). Also used by the benchmark."""
    keys = PairKeys(cfg.prompt_key, cfg.chosen_key, cfg.rejected_key)
    return build_dataset(path or cfg.pairs, tokenizer, cfg.max_length, cfg.format, keys,
                         cfg.max_answer_length)


__all__ = ["ModelSource", "NothingToTrainError", "TrainResult", "load_pairs_for_training",
           "resolve_model", "save_checkpoint", "save_merged", "split_eval", "train"]
