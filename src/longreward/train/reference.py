"""Reference log-probs: computed once, in the same packed layout, and cached on disk.

The reference is frozen, so its answer log-probs are a property of (model, data, tokenisation).
We compute them before the first step with the policy in eval/no-grad (with LoRA: the base model,
adapters disabled) instead of keeping a second model in memory, as TRL's
``precompute_ref_log_probs`` does. The cache file name carries a hash of everything that
determines the numbers, so a changed model, data file, tokenizer or length limit never reuses
stale values, and a resumed run reuses them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig
from .data import TokenizedPair
from .logprobs import answer_logps
from .packing import pack_pairs


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_SAMPLE = 1 << 20


def weights_signature(model: str, commit: str | None = None) -> dict[str, Any]:
    """What identifies the reference *weights*, cheaply.

    A local directory is identified by its weight files' names, sizes and a hash of their first
    and last MiB (tensor data, so retrained weights written over the same path give a new
    signature, while a copy of the directory elsewhere keeps it); not by its path, which may be
    relative to a different working directory on the next run. A hub id is identified by its
    name and resolved commit.
    """
    path = Path(model).expanduser()
    if path.is_file():  # a .gguf file
        return {"local": {path.name: _file_sample(path)}}
    if not path.is_dir():
        return {"hub": model, "commit": commit}
    files = {f.name: _file_sample(f) for f in sorted(path.iterdir())
             if f.is_file() and f.name.endswith(_WEIGHT_SUFFIXES)}
    return {"local": files}


def _file_sample(f: Path) -> list[Any]:
    """Size and a hash of the first and last MiB."""
    size = f.stat().st_size
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        h.update(fh.read(_SAMPLE))
        if size > 2 * _SAMPLE:
            fh.seek(size - _SAMPLE)
        h.update(fh.read(_SAMPLE))
    return [size, h.hexdigest()]


def reference_cache_key(cfg: TrainConfig, model_config: dict[str, Any], tokenizer: Any,
                        commit: str | None = None, data: str | None = None) -> str:
    """Hash of what determines reference log-probs (not of training hyper-parameters).
    ``data`` is the pair file (default: ``cfg.pairs``; the eval file for the eval set)."""
    tok_sig = {"vocab": _tokenizer_digest(tokenizer),
               "chat_template": getattr(tokenizer, "chat_template", None),
               "eos": tokenizer.eos_token_id}
    payload = {
        "weights": weights_signature(cfg.model, commit),
        "model_config": {k: v for k, v in sorted(model_config.items())
                         if not k.startswith("_") and k not in {"transformers_version", "use_cache"}},
        "data": file_digest(data or cfg.pairs),
        "format": [cfg.format, cfg.prompt_key, cfg.chosen_key, cfg.rejected_key],
        "max_length": cfg.max_length, "max_answer_length": cfg.max_answer_length,
        "tokenizer": tok_sig, "dtype": _ref_dtype_tag(cfg),
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _tokenizer_digest(tokenizer: Any) -> str:
    """The tokenizer's full definition (vocabulary, merges, normalisation), hashed: its name
    or path says nothing when the directory is reused for another tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    blob = (backend.to_str() if backend is not None
            else json.dumps(sorted(tokenizer.get_vocab().items())))
    return hashlib.sha256(blob.encode()).hexdigest()


def _ref_dtype_tag(cfg: TrainConfig) -> str:
    # The effective setting: ``bf16=None`` means "on with CUDA", the same run as ``bf16=True``.
    bf16 = torch.cuda.is_available() if cfg.bf16 is None else cfg.bf16
    return f"{cfg.model_dtype}/bf16={bf16}"


@contextlib.contextmanager
def reference_mode(model: torch.nn.Module, adapters: bool = False) -> Iterator[None]:
    """Eval mode, no grad, and (unless ``adapters``) adapters disabled when the policy is a
    PEFT model: the reference. With ``adapters=True`` it is the policy, for evaluation."""
    was_training = model.training
    model.eval()
    disable = None if adapters else getattr(model, "disable_adapter", None)
    ctx = disable() if callable(disable) else contextlib.nullcontext()
    try:
        with ctx, torch.no_grad():
            yield
    finally:
        model.train(was_training)


def compute_reference_logps(model: torch.nn.Module, pairs: list[TokenizedPair], backend: str,
                            device: torch.device, logits_chunk: int = 1024,
                            accelerator: Any = None,
                            adapter_model: torch.nn.Module | None = None,
                            adapters: bool = False) -> dict[str, torch.Tensor]:
    """``{"chosen": [N], "rejected": [N]}`` summed reference log-probs, one pair at a time
    (with ``adapters=True``: the current policy's, no grad; used for evaluation), and
    ``chosen_logits``/``rejected_logits``, each answer's summed mean logits (for TRL's
    ``logits/*`` metrics; not cached).

    Under several processes each rank does a strided share (padded to equal counts, since
    FSDP/ZeRO-3 forwards are collective) and the shares are summed across ranks.
    """
    world = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    n = len(pairs)
    out = {k: torch.zeros(n, dtype=torch.float64, device=device) for k in _PAIR_STATS}
    mine = list(range(rank, n, world))
    per_rank = math.ceil(n / world)
    with reference_mode(adapter_model if adapter_model is not None else model, adapters):
        for j in range(per_rank):
            real = j < len(mine)
            i = mine[j] if real else mine[-1] if mine else 0
            batch = pack_pairs([pairs[i]]).to(device)
            autocast = (accelerator.autocast() if accelerator is not None
                        else contextlib.nullcontext())
            with autocast:
                lp = answer_logps(model, batch, backend, logits_chunk)
            if real:
                for key in _PAIR_STATS:
                    out[key][i] = getattr(lp, key)[0].double()
    if accelerator is not None and world > 1:
        out = {k: accelerator.reduce(v, reduction="sum") for k, v in out.items()}
    return {k: v.float().cpu() for k, v in out.items()}


#: what ``compute_reference_logps`` returns per pair; the first two are the cached reference
_PAIR_STATS = ("chosen", "rejected", "chosen_logits", "rejected_logits")


def load_or_compute_reference(path: Path, key: str, pairs: list[TokenizedPair],
                              compute: Any, is_main: bool = True,
                              log: Any = print) -> dict[str, torch.Tensor]:
    """Load the cache at ``path`` if its key and records match; else ``compute()`` and save."""
    records = [p.record for p in pairs]
    if path.exists():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("key") == key and blob.get("records") == records:
            log(f"reference log-probs: reusing {path}")
            return {"chosen": blob["chosen"], "rejected": blob["rejected"]}
        log(f"reference log-probs: {path} is for other data or model; recomputing")
    log(f"reference log-probs: computing for {len(pairs)} pairs")
    ref = compute()
    if is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"key": key, "records": records, "chosen": ref["chosen"],
                    "rejected": ref["rejected"]}, tmp)
        tmp.replace(path)
    return ref
