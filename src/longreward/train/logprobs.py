"""Answer log-probs from one shared-prefix forward pass, with logits at answer positions only.

The model's own forward is called (not its backbone), so DDP/FSDP/DeepSpeed wrappers see a
normal forward; ``logits_to_keep`` (transformers ≥ 4.50) restricts the LM head to the positions
that predict answer tokens. A full ``[T, vocab]`` logits tensor is never built: at 32k tokens and
a 152k vocabulary it alone would be ~19 GiB in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from .packing import PackedBatch


@dataclass
class AnswerLogps:
    chosen: torch.Tensor  # [B] summed log-probs
    rejected: torch.Tensor  # [B]
    chosen_tokens: torch.Tensor  # [B]
    rejected_tokens: torch.Tensor  # [B]
    #: [B] sums over each answer's tokens of the mean logit over the vocabulary (detached):
    #: TRL's ``logits/chosen`` and ``logits/rejected`` are these over the token counts
    chosen_logits: torch.Tensor | None = None
    rejected_logits: torch.Tensor | None = None


def _token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def gather_logps(logits: torch.Tensor, targets: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``log_softmax(logits)[targets]`` for ``logits [N, V]``, chunked along N.

    With grad enabled each chunk is checkpointed: autograd keeps only the (bf16) logits, not a
    float32 copy per chunk, and rebuilds the fp32 softmax one chunk at a time in backward.
    """
    outs = []
    for i in range(0, logits.shape[0], max(chunk, 1)):
        lg, tg = logits[i : i + chunk], targets[i : i + chunk]
        if torch.is_grad_enabled() and lg.requires_grad:
            outs.append(checkpoint(_token_logps, lg, tg, use_reentrant=False))
        else:
            outs.append(_token_logps(lg, tg))
    return torch.cat(outs) if outs else logits.new_zeros(0, dtype=torch.float32)


@torch.no_grad()
def mean_logits(logits: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``logits.mean(-1)`` in float32 for ``logits [N, V]``, chunked along N (no fp32 copy of
    the whole tensor), without grad: a metric, never a loss term."""
    outs = [logits[i : i + chunk].float().mean(-1) for i in range(0, logits.shape[0], max(chunk, 1))]
    return torch.cat(outs) if outs else logits.new_zeros(0, dtype=torch.float32)


def answer_logps(model: torch.nn.Module, batch: PackedBatch, backend: str,
                 logits_chunk: int = 1024) -> AnswerLogps:
    """Summed log-probs of each pair's chosen and rejected answer from one packed pass (the
    counterpart of TRL's ``concatenated_forward``), with their summed mean logits.

    ``model`` must have been switched to the shared-prefix attention
    (:func:`~longreward.train.attention.register_shared_prefix_attention`).
    """
    out = model(input_ids=batch.input_ids, position_ids=batch.position_ids,
                shared_prefix=batch.spec(backend), logits_to_keep=batch.keep_positions,
                use_cache=False)
    logits = out.logits  # [B, K, V]
    picked = logits[batch.target_row, batch.target_col]  # [N, V]
    tok = gather_logps(picked, batch.target_ids, logits_chunk)
    where = (batch.target_row, batch.target_side)
    B = batch.input_ids.shape[0]
    sums = torch.zeros(B, 2, dtype=tok.dtype, device=tok.device).index_put(
        where, tok, accumulate=True)
    counts = torch.zeros(B, 2, dtype=torch.long, device=tok.device).index_put(
        where, torch.ones_like(batch.target_ids), accumulate=True)
    logit_sums = torch.zeros(B, 2, dtype=torch.float32, device=tok.device).index_put(
        where, mean_logits(picked, logits_chunk), accumulate=True)
    return AnswerLogps(sums[:, 0], sums[:, 1], counts[:, 0], counts[:, 1],
                       logit_sums[:, 0], logit_sums[:, 1])


def ordinary_answer_logps(model: torch.nn.Module, prompt_ids: list[int],
                          answer_ids: list[int]) -> torch.Tensor:
    """Summed answer log-prob from an ordinary ``prompt+answer`` forward (full logits).

    The two-sequence baseline that the shared-prefix pass must reproduce; used by tests and
    by the benchmark's correctness check, never in training.
    """
    ids = torch.tensor([prompt_ids + answer_ids], device=next(model.parameters()).device)
    logits = model(input_ids=ids, use_cache=False).logits[0]
    P = len(prompt_ids)
    return _token_logps(logits[P - 1 : -1], ids[0, P:]).sum()
