"""``longreward train``: DPO + λ·CE on preference pairs with a shared-prefix forward pass.

Every field of ``TrainConfig`` is a flag here, and each flag's help is that field's description
(one text, one place). Torch, transformers, accelerate and peft are imported inside the command
only, so the rest of the CLI works without the ``[train]`` extra.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ..train.config import TrainConfig
from ._app import app


def _h(name: str) -> str:
    return TrainConfig.model_fields[name].description or ""


@app.command("train")
def train_command(
    pairs: Annotated[Path | None, typer.Argument(help=_h("pairs"))] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help=_h("model"))] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help=_h("output_dir"))] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML/TOML file with these options (or a run config with a `train:` section); flags override it.")] = None,
    # -- data
    format: Annotated[str | None, typer.Option("--format", help=_h("format"))] = None,
    prompt_key: Annotated[str | None, typer.Option("--prompt-key", help=_h("prompt_key"))] = None,
    chosen_key: Annotated[str | None, typer.Option("--chosen-key", help=_h("chosen_key"))] = None,
    rejected_key: Annotated[str | None, typer.Option("--rejected-key", help=_h("rejected_key"))] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help=_h("max_length"))] = None,
    max_answer_length: Annotated[int | None, typer.Option("--max-answer-length", help=_h("max_answer_length"))] = None,
    eval_file: Annotated[Path | None, typer.Option("--eval-file", help=_h("eval_file"))] = None,
    eval_fraction: Annotated[float | None, typer.Option("--eval-fraction", help=_h("eval_fraction"))] = None,
    eval_every: Annotated[int | None, typer.Option("--eval-every", help=_h("eval_every"))] = None,
    # -- model
    attention: Annotated[str | None, typer.Option("--attention", help=_h("attention"))] = None,
    gradient_checkpointing: Annotated[bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help=_h("gradient_checkpointing"))] = None,
    bf16: Annotated[bool | None, typer.Option("--bf16/--no-bf16", help=_h("bf16"))] = None,
    model_dtype: Annotated[str | None, typer.Option("--model-dtype", help=_h("model_dtype"))] = None,
    lora: Annotated[bool | None, typer.Option("--lora/--no-lora", help=_h("lora"))] = None,
    lora_r: Annotated[int | None, typer.Option("--lora-r", help=_h("lora_r"))] = None,
    lora_alpha: Annotated[int | None, typer.Option("--lora-alpha", help=_h("lora_alpha"))] = None,
    lora_dropout: Annotated[float | None, typer.Option("--lora-dropout", help=_h("lora_dropout"))] = None,
    lora_target_modules: Annotated[str | None, typer.Option("--lora-target-modules", help=_h("lora_target_modules"))] = None,
    lora_merge: Annotated[bool | None, typer.Option("--lora-merge/--no-lora-merge", help=_h("lora_merge"))] = None,
    # -- loss
    beta: Annotated[float | None, typer.Option("--beta", help=_h("beta"))] = None,
    ce_weight: Annotated[float | None, typer.Option("--ce-weight", help=_h("ce_weight"))] = None,
    # -- optimisation
    learning_rate: Annotated[float | None, typer.Option("--learning-rate", "--lr", help=_h("learning_rate"))] = None,
    num_epochs: Annotated[float | None, typer.Option("--num-epochs", "--epochs", help=_h("num_epochs"))] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help=_h("max_steps"))] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help=_h("batch_size"))] = None,
    grad_accum: Annotated[int | None, typer.Option("--grad-accum", help=_h("grad_accum"))] = None,
    warmup_ratio: Annotated[float | None, typer.Option("--warmup-ratio", help=_h("warmup_ratio"))] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help=_h("scheduler"))] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay", help=_h("weight_decay"))] = None,
    max_grad_norm: Annotated[float | None, typer.Option("--max-grad-norm", help=_h("max_grad_norm"))] = None,
    seed: Annotated[int | None, typer.Option("--seed", help=_h("seed"))] = None,
    logits_chunk: Annotated[int | None, typer.Option("--logits-chunk", help=_h("logits_chunk"))] = None,
    # -- bookkeeping
    log_every: Annotated[int | None, typer.Option("--log-every", help=_h("log_every"))] = None,
    save_every: Annotated[int | None, typer.Option("--save-every", help=_h("save_every"))] = None,
    resume_from: Annotated[str | None, typer.Option("--resume-from", help=_h("resume_from"))] = None,
    ref_cache: Annotated[Path | None, typer.Option("--ref-cache", help=_h("ref_cache"))] = None,
    report_to: Annotated[str | None, typer.Option("--report-to", help=_h("report_to"))] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also show other libraries' warnings, notes and progress bars (transformers, peft, accelerate, torch); by default they are counted in one line at the end, so the training lines stay readable.")] = False,
) -> None:
    """Train a policy with DPO + λ·CE on long-context preference pairs (LongReward §4.1)."""
    # Every parameter but --config and --verbose is a TrainConfig field of the same name.
    flags = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()
             if k not in ("config", "verbose")}
    from ..train.config import load_train_config

    cfg = load_train_config(config, **flags)  # a bad option: ConfigError, exit 2 at the boundary
    cfg.require_complete()

    missing = [m for m in ("torch", "transformers", "accelerate") + (("peft",) if cfg.lora else ())
               if not _importable(m)]
    if missing:
        typer.echo(f"error: `longreward train` needs {', '.join(missing)}, which is not installed. "
                   "Fix: pip install 'longreward[train]'", err=True)
        raise typer.Exit(2)
    from ..train.trainer import NothingToTrainError, train

    try:
        with library_output(shown=verbose):
            result = train(cfg, log=typer.echo)
    except NothingToTrainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    r = result.report
    where = result.merged or result.checkpoints[-1]
    typer.echo(f"done: {result.steps} steps on {r.n_pairs} pairs "
               f"({len(r.rejected)} rows skipped, {r.n_truncated} prompts truncated); "
               f"model in {where}")


#: loggers of the libraries training runs on; their notes go quiet unless --verbose
_LIBRARY_LOGGERS = ("transformers", "peft", "accelerate", "torch", "huggingface_hub",
                    "datasets")


@contextmanager
def library_output(*, shown: bool) -> Iterator[None]:
    """Keep other libraries' output from burying ours: their warnings (a FutureWarning
    about a renamed argument, peft's notes on the config) are counted, not printed, their
    log notes below ERROR are dropped and their progress bars are off. Our own lines and
    warnings, and every error, still show. ``shown`` leaves everything as it is."""
    if shown:
        yield
        return
    hidden: Counter[str] = Counter()

    def show(message: Any, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if f"{os.sep}longreward{os.sep}" in filename:
            original(message, category, filename, lineno, file, line)
        else:
            hidden[category.__name__] += 1

    levels = {name: logging.getLogger(name).level for name in _LIBRARY_LOGGERS}
    bars = os.environ.get("TQDM_DISABLE"), os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    os.environ["TQDM_DISABLE"] = os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    transformers_logging = _transformers_logging()
    if transformers_logging is not None:
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    with warnings.catch_warnings():
        original = warnings.showwarning
        warnings.showwarning = show
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
            for key, value in zip(("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS"), bars,
                                  strict=True):
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if transformers_logging is not None:
                transformers_logging.set_verbosity(verbosity)
                transformers_logging.enable_progress_bar()
    if hidden:
        kinds = ", ".join(f"{n} {kind}" for kind, n in hidden.most_common())
        typer.echo(f"({kinds} from other libraries not shown; --verbose shows them)")


def _transformers_logging() -> Any:
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return None
    return transformers_logging


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
