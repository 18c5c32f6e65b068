"""The DPO + λ·CE training loop on 🤗 Accelerate (one GPU, DDP, FSDP or DeepSpeed ZeRO-3).

Deliberately small: our own batching (packed pairs, not a DataLoader) sharded by rank,
``accelerator.accumulate`` for gradient accumulation, AdamW, a transformers schedule stepped once
per optimizer step, and checkpoints that are both Hugging Face model directories and
``accelerator.save_state`` snapshots, so a run can be resumed or the model used directly.

``train`` reads as its steps (``_Run``: read the data, load the policy, prepare the optimizer,
load the reference, resume, fit), and one step is split as TRL's ``DPOTrainer`` splits it:
``concatenated_forward`` is ``logprobs.answer_logps``, ``dpo_loss`` is ``loss.dpo_ce_loss``,
``get_batch_loss_metrics`` is :func:`batch_loss_metrics`. Metrics carry TRL's names, and every
checkpoint holds a transformers ``TrainerState`` (``trainer_state.json`` with ``log_history``).

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
from .logprobs import AnswerLogps, answer_logps
from .loss import LossOutput, dpo_ce_loss
from .model_source import ModelSource, resolve_model
from .packing import PackedBatch, pack_pairs
from .reference import compute_reference_logps, load_or_compute_reference, reference_cache_key

#: a Hugging Face Trainer's state file, in each checkpoint and in the output directory
TRAINER_STATE = "trainer_state.json"


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
    run = _Run(cfg, log)
    tokenizer = source.load_tokenizer()
    data = run.read_data(tokenizer)
    run.load_policy(source, tokenizer, data)
    run.prepare_optimizer(len(data.train))
    run.load_reference(data)
    run.resume()
    return run.fit(data)


@dataclass
class _Data:
    train: list[TokenizedPair]
    eval: list[TokenizedPair]
    #: the pair file before ``eval_fraction`` holds some out (one reference cache covers it)
    everything: list[TokenizedPair]
    report: DataReport


class _Run:
    """One training run, in the steps ``train`` takes. The step itself is split as TRL's
    ``DPOTrainer`` splits it: ``concatenated_forward`` (``logprobs.answer_logps``: one packed
    pass, each answer's log-prob sum), ``dpo_loss`` (``loss.dpo_ce_loss``) and
    ``get_batch_loss_metrics`` (:func:`batch_loss_metrics`: both, plus TRL's metrics)."""

    def __init__(self, cfg: TrainConfig, log: Callable[[str], None]) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        use_bf16 = torch.cuda.is_available() if cfg.bf16 is None else cfg.bf16
        self.cfg = cfg
        self.accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum,
                                       mixed_precision="bf16" if use_bf16 else "no",
                                       log_with=None if cfg.report_to == "none" else cfg.report_to,
                                       project_dir=cfg.output_dir)
        self.is_main = self.accelerator.is_main_process
        self.say = log if self.is_main else (lambda _msg: None)
        set_seed(cfg.seed)
        self.out_dir = Path(cfg.output_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.step = 0
        self.history: list[dict[str, Any]] = []  # trainer_state.json's log_history

    # ------------------------------------------------------------------ setup

    def read_data(self, tokenizer: Any) -> _Data:
        """The pairs, tokenised, with what was skipped said and written to data_report.json;
        the eval set from ``eval_file`` or held out by ``eval_fraction``."""
        cfg = self.cfg
        pairs, report = load_pairs_for_training(cfg, tokenizer)
        _say_report(self.say, cfg.pairs, report)
        eval_pairs: list[TokenizedPair] = []
        blob = report.to_dict()
        if cfg.eval_file:
            eval_pairs, eval_report = load_pairs_for_training(cfg, tokenizer, cfg.eval_file)
            _say_report(self.say, cfg.eval_file, eval_report)
            blob["eval"] = eval_report.to_dict()
        if self.is_main:
            (self.out_dir / "data_report.json").write_text(json.dumps(blob, indent=2))
        if not pairs:
            raise NothingToTrainError(f"no usable pairs in {cfg.pairs}; see the skipped records "
                                      "above")
        if cfg.eval_file and not eval_pairs:
            raise NothingToTrainError(f"no usable pairs in the eval file {cfg.eval_file}; see "
                                      "the skipped records above")
        everything = pairs
        if cfg.eval_fraction > 0:
            pairs, eval_pairs = split_eval(everything, cfg.eval_fraction, cfg.seed)
            self.say(f"eval: {len(eval_pairs)} pairs held out ({cfg.eval_fraction:g}), "
                     f"{len(pairs)} to train on")
        self.pad_id = (tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                       else tokenizer.eos_token_id)
        return _Data(pairs, eval_pairs, everything, report)

    def load_policy(self, source: ModelSource, tokenizer: Any, data: _Data) -> None:
        """The model with the shared-prefix attention (LoRA adapters on it when asked), and what
        keys its reference log-probs (taken from the base weights)."""
        cfg = self.cfg
        attn_name = register_shared_prefix_attention()
        dtype = torch.bfloat16 if cfg.model_dtype == "bfloat16" else torch.float32
        model = source.load_model(dtype=dtype, attn_implementation=attn_name)
        model.config.use_cache = False
        if cfg.gradient_checkpointing:
            enable_checkpointing(model)
        self.model_config = model.config.to_dict()
        warning = window_warning(self.model_config, [*data.everything, *data.eval])
        if warning:
            self.say(warning)
        self.commit = getattr(model.config, "_commit_hash", None)
        self.tokenizer = tokenizer
        self.model = _with_lora(model, cfg) if cfg.lora else model
        self.backend = resolve_backend(cfg.attention, self.accelerator.device)
        self.say(f"attention: {self.backend}; device: {self.accelerator.device}; processes: "
                 f"{self.accelerator.num_processes}")

    def prepare_optimizer(self, n_train: int) -> None:
        """AdamW and the schedule over the steps the run will take, prepared by accelerate."""
        from transformers import get_scheduler

        cfg, acc = self.cfg, self.accelerator
        micro_per_epoch = math.ceil(math.ceil(n_train / cfg.batch_size) / acc.num_processes)
        self.steps_per_epoch = max(math.ceil(micro_per_epoch / cfg.grad_accum), 1)
        self.total_steps = (cfg.max_steps if cfg.max_steps > 0
                            else max(math.ceil(cfg.num_epochs * self.steps_per_epoch), 1))
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate,
                                      weight_decay=cfg.weight_decay)
        # The scheduler is stepped by us once per optimizer step (not prepared, since accelerate
        # would step it once per process), and registered so save_state/load_state include it.
        self.scheduler = get_scheduler(
            cfg.scheduler, optimizer,
            num_warmup_steps=math.ceil(cfg.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps)
        self.model, self.optimizer = acc.prepare(self.model, optimizer)
        acc.register_for_checkpointing(self.scheduler)

    def pair_logps(self, pairs: list[TokenizedPair], adapters: bool = False) -> dict[str, Any]:
        """Per-pair log-prob sums without grad: the reference's (adapters off), or with
        ``adapters`` the current policy's (for evaluation)."""
        acc = self.accelerator
        return compute_reference_logps(self.model, pairs, self.backend, acc.device,
                                       self.cfg.logits_chunk, acc,
                                       adapter_model=acc.unwrap_model(self.model),
                                       adapters=adapters)

    def load_reference(self, data: _Data) -> None:
        """Reference log-probs from the initial weights, so before any resume state is loaded.
        With ``eval_fraction`` they cover the whole file (one cache), then are split."""
        cfg = self.cfg
        ref_key = reference_cache_key(cfg, self.model_config, self.tokenizer, commit=self.commit)
        ref_path = (Path(cfg.ref_cache) if cfg.ref_cache
                    else self.out_dir / f"ref_logps-{ref_key}.pt")
        ref = load_or_compute_reference(ref_path, ref_key, data.everything,
                                        lambda: self.pair_logps(data.everything),
                                        is_main=self.is_main, log=self.say)
        self.eval_ref: dict[str, torch.Tensor] | None = None
        if cfg.eval_fraction > 0:
            row_of = {p.record: i for i, p in enumerate(data.everything)}
            self.eval_ref = _take(ref, [row_of[p.record] for p in data.eval])
            ref = _take(ref, [row_of[p.record] for p in data.train])
        elif data.eval:
            eval_key = reference_cache_key(cfg, self.model_config, self.tokenizer,
                                           commit=self.commit, data=cfg.eval_file)
            self.eval_ref = load_or_compute_reference(
                self.out_dir / f"ref_logps-eval-{eval_key}.pt", eval_key, data.eval,
                lambda: self.pair_logps(data.eval), is_main=self.is_main, log=self.say)
        self.ref = ref
        self.accelerator.wait_for_everyone()

    def resume(self) -> None:
        """Load a checkpoint's state (weights, optimizer, schedule, RNG), its step and its
        log history, when ``resume_from`` says so."""
        cfg = self.cfg
        if not cfg.resume_from:
            return
        ckpt = (find_latest_checkpoint(self.out_dir) if cfg.resume_from == "latest"
                else Path(cfg.resume_from))
        if ckpt is None or not (ckpt / "state").is_dir():
            raise FileNotFoundError(f"no resumable checkpoint at {cfg.resume_from!r}; expected "
                                    "a checkpoint-N directory with a state/ folder")
        self.accelerator.load_state(str(ckpt / "state"))
        state = json.loads((ckpt / TRAINER_STATE).read_text())
        self.step = state["global_step"]
        self.history = list(state.get("log_history") or [])  # older checkpoints have none
        self.say(f"resumed from {ckpt} at step {self.step}")

    # ------------------------------------------------------------------ the loop

    def fit(self, data: _Data) -> TrainResult:
        cfg, acc = self.cfg, self.accelerator
        if acc.trackers == [] and cfg.report_to != "none":
            acc.init_trackers("longreward-train", config=cfg.to_dict())
        result = TrainResult(self.out_dir, self.step, data.report)
        started, first_step = time.perf_counter(), self.step
        self.model.train()
        window = _StepWindow(acc.device)
        skip_micro = self.step * cfg.grad_accum
        micro_seen, epoch = 0, 0
        while self.step < self.total_steps:
            for idx in _micro_batches(len(data.train), cfg.batch_size, cfg.seed, epoch,
                                      acc.process_index, acc.num_processes):
                if self.step >= self.total_steps:
                    break
                micro_seen += 1
                if micro_seen <= skip_micro or not self.micro_step(data.train, idx, window):
                    continue
                result.last_metrics = self.log(window.row(self))
                self.scheduler.step()
                more = self.step < self.total_steps
                if more and data.eval and cfg.eval_every and self.step % cfg.eval_every == 0:
                    result.eval_metrics = self.evaluate(data.eval)
                    self.model.train()
                if more and cfg.save_every > 0 and self.step % cfg.save_every == 0:
                    result.checkpoints.append(self.save_checkpoint())
                window.reset()
            epoch += 1
        result.steps = self.step
        if data.eval:
            result.eval_metrics = self.evaluate(data.eval)
        last = self.save_checkpoint()
        result.checkpoints.append(last)
        self.write_summary(first_step, time.perf_counter() - started)
        if cfg.lora and cfg.lora_merge:
            result.merged = save_merged(acc, self.model, self.tokenizer, last / "merged")
            self.say(f"LoRA merged into the base model: {result.merged}")
        acc.end_training()
        return result

    def micro_step(self, pairs: list[TokenizedPair], idx: list[int],
                   window: _StepWindow) -> bool:
        """Forward, loss and backward of the micro-batch ``pairs[idx]``; the optimizer steps
        when the accumulation is complete. True when it did (``self.step`` has advanced)."""
        cfg, acc = self.cfg, self.accelerator
        batch = pack_pairs([pairs[i] for i in idx], self.pad_id).to(acc.device)
        ref_c = self.ref["chosen"][idx].to(acc.device)
        ref_r = self.ref["rejected"][idx].to(acc.device)
        with acc.accumulate(self.model), acc.autocast():
            out = batch_loss_metrics(self.model, batch, ref_c, ref_r, cfg, self.backend)
            acc.backward(out.loss)
            if acc.sync_gradients and cfg.max_grad_norm > 0:
                # model.parameters() after prepare: FSDP only clips through its own (flat) params.
                window.grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        window.add(out.metrics(), batch)
        if not acc.sync_gradients:
            return False
        window.learning_rate = self.scheduler.get_last_lr()[0]  # the rate this update used
        self.step += 1
        return True

    def evaluate(self, eval_pairs: list[TokenizedPair]) -> dict[str, Any]:
        """TRL's metric names with its ``eval_`` prefix, over the whole eval set at once (the
        DPO loss a mean over pairs, the NLL a mean over all chosen tokens), not a mean of
        batch means."""
        assert self.eval_ref is not None
        stats = self.pair_logps(eval_pairs, adapters=True)
        lp = AnswerLogps(stats["chosen"], stats["rejected"],
                         torch.tensor([len(p.chosen_ids) for p in eval_pairs]),
                         torch.tensor([len(p.rejected_ids) for p in eval_pairs]),
                         stats["chosen_logits"], stats["rejected_logits"])
        out = loss_with_metrics(lp, self.eval_ref["chosen"], self.eval_ref["rejected"], self.cfg)
        row = {"step": self.step, "epoch": self.step / self.steps_per_epoch,
               **{f"eval_{k}": v for k, v in out.metrics().items()},
               "eval_pairs": len(eval_pairs)}
        return self.log(row, force=True)

    # ------------------------------------------------------------------ records

    def log(self, row: dict[str, Any], force: bool = False) -> dict[str, Any]:
        """One metrics row to metrics.jsonl, the log history (trainer_state.json), the
        trackers, and the console every ``log_every`` steps."""
        if self.is_main:
            with (self.out_dir / "metrics.jsonl").open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            if force or row["step"] % self.cfg.log_every == 0 or row["step"] == self.total_steps:
                self.say(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in row.items()))
        self.history.append(row)
        if self.cfg.report_to != "none":
            self.accelerator.log(row, step=row["step"])
        return row

    def trainer_state(self) -> Any:
        """Hugging Face's ``TrainerState`` at this point of the run, so that what reads a
        Trainer's output (its ``log_history``) reads ours."""
        from transformers.trainer_callback import TrainerState

        cfg = self.cfg
        return TrainerState(
            epoch=self.step / self.steps_per_epoch, global_step=self.step,
            max_steps=self.total_steps, logging_steps=1, eval_steps=cfg.eval_every,
            save_steps=cfg.save_every, train_batch_size=cfg.batch_size,
            num_train_epochs=math.ceil(self.total_steps / self.steps_per_epoch),
            log_history=list(self.history),
            is_local_process_zero=self.accelerator.is_local_main_process,
            is_world_process_zero=self.is_main)

    def save_checkpoint(self) -> Path:
        return save_checkpoint(self.accelerator, self.model, self.tokenizer, self.cfg,
                               self.step, self.trainer_state())

    def write_summary(self, first_step: int, seconds: float) -> None:
        """The closing entry of the log history, and ``OUTPUT/trainer_state.json``, as a
        Hugging Face Trainer adds and writes them at the end of training."""
        cfg = self.cfg
        steps = self.step - first_step
        losses = [r["loss"] for r in self.history if "loss" in r][-steps:] if steps else []
        samples = steps * cfg.batch_size * cfg.grad_accum * self.accelerator.num_processes
        self.history.append({
            "step": self.step, "epoch": self.step / self.steps_per_epoch,
            "train_runtime": seconds,
            "train_loss": sum(losses) / len(losses) if losses else float("nan"),
            "train_samples_per_second": samples / max(seconds, 1e-9),
            "train_steps_per_second": steps / max(seconds, 1e-9)})
        if self.is_main:
            self.trainer_state().save_to_json(str(self.out_dir / TRAINER_STATE))


class _StepWindow:
    """What the micro-batches of one optimizer step add up to: metrics, tokens, time."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.grad_norm: Any = 0.0
        self.learning_rate = 0.0
        self.reset()

    def reset(self) -> None:
        self.metrics: list[dict[str, float]] = []
        self.tokens = self.tokens_two = 0
        self.t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def add(self, metrics: dict[str, float], batch: PackedBatch) -> None:
        self.metrics.append(metrics)
        self.tokens += batch.num_tokens
        self.tokens_two += batch.num_tokens_two_sequences

    def row(self, run: _Run) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.t0
        world = run.accelerator.num_processes
        row: dict[str, Any] = {"step": run.step, "epoch": run.step / run.steps_per_epoch}
        row.update({k: sum(m[k] for m in self.metrics) / len(self.metrics)
                    for k in self.metrics[0]})
        row["learning_rate"] = self.learning_rate
        if run.cfg.max_grad_norm > 0 and self.grad_norm is not None:  # DeepSpeed clips inside
            row["grad_norm"] = float(self.grad_norm)
        # Throughput two ways: tokens we ran (the prompt once per pair) and tokens an
        # ordinary DPO trainer runs for the same pairs (the prompt twice), per second.
        row.update(tokens_per_s=self.tokens * world / max(elapsed, 1e-9),
                   tokens_per_s_trl=self.tokens_two * world / max(elapsed, 1e-9),
                   packed_tokens=self.tokens, step_time_s=elapsed)
        peak = _peak_memory_gib(self.device)
        if peak is not None:
            row["peak_mem_gib"] = peak
        return row


def batch_loss_metrics(model: torch.nn.Module, batch: PackedBatch, ref_c: torch.Tensor,
                       ref_r: torch.Tensor, cfg: TrainConfig, backend: str) -> LossOutput:
    """TRL's ``get_batch_loss_metrics``: the packed forward, then the loss and its metrics."""
    return loss_with_metrics(answer_logps(model, batch, backend, cfg.logits_chunk), ref_c,
                             ref_r, cfg)


def loss_with_metrics(lp: AnswerLogps, ref_c: torch.Tensor, ref_r: torch.Tensor,
                      cfg: TrainConfig) -> LossOutput:
    """DPO + λ·NLL of answers whose log-probs are ``lp``, with TRL's ``logits/*`` metrics:
    the mean logit over each side's answer tokens (token-weighted, as TRL averages them)."""
    out = dpo_ce_loss(lp.chosen, lp.rejected, ref_c, ref_r, lp.chosen_tokens, cfg.beta,
                      cfg.ce_weight)
    if lp.chosen_logits is not None and lp.rejected_logits is not None:
        out.logits_chosen = float(lp.chosen_logits.sum() / lp.chosen_tokens.sum().clamp(min=1))
        out.logits_rejected = float(lp.rejected_logits.sum()
                                    / lp.rejected_tokens.sum().clamp(min=1))
    return out


def _with_lora(model: torch.nn.Module, cfg: TrainConfig) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    targets: Any = (cfg.lora_target_modules if cfg.lora_target_modules == "all-linear"
                    else [t.strip() for t in cfg.lora_target_modules.split(",") if t.strip()])
    return get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                            lora_dropout=cfg.lora_dropout,
                                            target_modules=targets, task_type="CAUSAL_LM"))


def _take(ref: dict[str, torch.Tensor], rows: list[int]) -> dict[str, torch.Tensor]:
    return {k: v[rows] for k, v in ref.items()}


def _say_report(say: Callable[[str], None], path: str, report: DataReport) -> None:
    say(f"{path}: {report.n_pairs} of {report.n_rows} rows usable; {len(report.rejected)} "
        f"rejected; {report.n_truncated} prompts cut in the middle "
        f"({report.n_truncated_tokens} tokens)")
    for _record, reason in report.rejected:
        say(f"  skipped {reason}")  # the reason names the record and field
    if report.n_generation_split:
        say(f"  warning: in {report.n_generation_split} pairs the chat template's full rendering "
            "merges the prompt's last token with the answer's first (a generation prompt that "
            "ends in whitespace); they are trained on the split generation produces: the prompt "
            "as rendered for generation, the answer's tokens continuing it")
    if report.answer_end.get("eos_appended"):
        say(f"  note: the chat template marks no end of an assistant turn; the tokenizer's EOS "
            f"was appended to the answers of {report.answer_end['eos_appended']} pairs")


def save_checkpoint(accelerator: Any, model: torch.nn.Module, tokenizer: Any, cfg: TrainConfig,
                    step: int, state: Any = None) -> Path:
    """``checkpoint-<step>/``: an HF model dir (adapter only with LoRA) + tokenizer +
    ``training_config.json`` + ``trainer_state.json`` (``state``, a transformers
    ``TrainerState``; the step alone without one), and ``state/`` for exact resume."""
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
        if state is None:
            (path / TRAINER_STATE).write_text(json.dumps({"global_step": step}))
        else:
            state.save_to_json(str(path / TRAINER_STATE))
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
