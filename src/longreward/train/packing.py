"""Shared-prefix packing: one sequence ``[prompt | chosen | rejected]`` per pair.

Ordinary DPO trainers (TRL, OpenRLHF) run ``prompt+chosen`` and ``prompt+rejected`` as two
sequences, so an 8k–64k-token LongReward prompt (paper §4.1) is encoded twice for a few hundred
answer tokens. Here it is encoded once:

- rejected queries see the prompt and earlier rejected tokens, never chosen tokens;
- rejected position ids restart at ``P`` (``[0..P+C) ++ [P..P+R)``), so under RoPE every
  rejected token sees exactly the keys, at exactly the relative distances, it would have in
  its own ``prompt+rejected`` sequence. The result is the same function as two passes.

With ``batch_size > 1`` several packed pairs are right-padded to one length; each row keeps its
own segments, and padding is only ever attended by padding (causal order puts it last).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .data import TokenizedPair


@dataclass(frozen=True)
class Segments:
    """Lengths of one packed row; the row is ``prompt_len + chosen_len + rejected_len`` long."""

    prompt_len: int
    chosen_len: int
    rejected_len: int

    @property
    def length(self) -> int:
        return self.prompt_len + self.chosen_len + self.rejected_len

    @property
    def rejected_start(self) -> int:
        return self.prompt_len + self.chosen_len


@dataclass(eq=False)
class SharedPrefixSpec:
    """Everything the attention function needs, handed to it through the model's ``**kwargs``
    (transformers forwards unknown keyword arguments down to ``attention_interface``).

    Masks are built once per forward and reused by every layer (and by the recomputation under
    gradient checkpointing), hence the cache.
    """

    segments: tuple[Segments, ...]
    seq_len: int
    backend: str
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def boundaries(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = f"bounds:{device}"
        if key not in self._cache:
            t = torch.tensor([[s.prompt_len, s.rejected_start, s.length] for s in self.segments],
                             dtype=torch.long, device=device)
            self._cache[key] = (t[:, 0], t[:, 1], t[:, 2])
        return self._cache[key]

    def dense_mask(self, device: torch.device) -> torch.Tensor:
        """Boolean ``[B, 1, T, T]``, True = may attend. Used by the exact CPU path."""
        key = f"dense:{device}"
        if key not in self._cache:
            chosen_start, rejected_start, _ = self.boundaries(device)
            idx = torch.arange(self.seq_len, device=device)
            q = idx.view(1, -1, 1)
            k = idx.view(1, 1, -1)
            cs = chosen_start.view(-1, 1, 1)
            rs = rejected_start.view(-1, 1, 1)
            blocked = (q >= rs) & (k >= cs) & (k < rs)
            self._cache[key] = ((q >= k) & ~blocked).unsqueeze(1)
        return self._cache[key]

    def block_mask(self, device: torch.device, num_heads: int | None = None) -> Any:
        """FlexAttention ``BlockMask`` for the same rule, built once per forward."""
        key = f"block:{device}"
        if key not in self._cache:
            from torch.nn.attention.flex_attention import create_block_mask

            chosen_start, rejected_start, _ = self.boundaries(device)

            def mask_mod(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
                in_rejected = q_idx >= rejected_start[b]
                is_chosen_key = (kv_idx >= chosen_start[b]) & (kv_idx < rejected_start[b])
                return (q_idx >= kv_idx) & ~(in_rejected & is_chosen_key)

            self._cache[key] = create_block_mask(mask_mod, len(self.segments), None,
                                                 self.seq_len, self.seq_len, device=device)
        return self._cache[key]


@dataclass
class PackedBatch:
    """Model inputs plus the bookkeeping to read answer log-probs back out.

    ``keep_positions`` are the (sorted, unique across the batch) positions whose hidden states
    predict an answer token; logits are computed there only. Target ``j`` is the token
    ``target_ids[j]`` in row ``target_row[j]``, predicted by column ``target_col[j]`` of the
    kept logits, and belongs to answer ``target_side[j]`` (0 chosen, 1 rejected).
    """

    input_ids: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [B, T]
    segments: tuple[Segments, ...]
    keep_positions: torch.Tensor  # [K]
    target_row: torch.Tensor  # [N]
    target_col: torch.Tensor  # [N]
    target_ids: torch.Tensor  # [N]
    target_side: torch.Tensor  # [N]
    records: list[str]

    def to(self, device: torch.device | str) -> PackedBatch:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                 for k, v in self.__dict__.items()}
        return PackedBatch(**moved)

    @property
    def num_tokens(self) -> int:
        """Tokens in the packed rows: the prompt counted once."""
        return sum(s.length for s in self.segments)

    @property
    def num_tokens_two_sequences(self) -> int:
        """Tokens an ordinary DPO trainer (TRL) runs for the same pairs: ``prompt+chosen`` and
        ``prompt+rejected``, the prompt counted twice."""
        return sum(2 * s.prompt_len + s.chosen_len + s.rejected_len for s in self.segments)

    def spec(self, backend: str) -> SharedPrefixSpec:
        return SharedPrefixSpec(self.segments, int(self.input_ids.shape[1]), backend)


def pack_pairs(pairs: list[TokenizedPair], pad_id: int = 0) -> PackedBatch:
    """Pack pairs into one right-padded batch of shared-prefix rows."""
    if not pairs:
        raise ValueError("pack_pairs needs at least one pair")
    segs = tuple(Segments(len(p.prompt_ids), len(p.chosen_ids), len(p.rejected_ids)) for p in pairs)
    for p, s in zip(pairs, segs, strict=True):
        if s.prompt_len < 1 or s.chosen_len < 1 or s.rejected_len < 1:
            raise ValueError(f"record {p.record}: prompt and both answers need at least one token")
    T = max(s.length for s in segs)
    ids = torch.full((len(pairs), T), pad_id, dtype=torch.long)
    pos = torch.zeros((len(pairs), T), dtype=torch.long)
    rows: list[int] = []
    preds: list[int] = []
    targets: list[int] = []
    sides: list[int] = []
    for b, (p, s) in enumerate(zip(pairs, segs, strict=True)):
        P, C, R = s.prompt_len, s.chosen_len, s.rejected_len
        ids[b, : s.length] = torch.tensor(p.prompt_ids + p.chosen_ids + p.rejected_ids)
        pos[b, : P + C] = torch.arange(P + C)
        pos[b, P + C : s.length] = torch.arange(P, P + R)
        # Padding positions just count on; they only attend to themselves and earlier padding.
        pos[b, s.length :] = torch.arange(P + R, P + R + T - s.length)
        # Chosen token i (at P+i) is predicted by position P+i-1.
        rows += [b] * C
        preds += list(range(P - 1, P + C - 1))
        targets += p.chosen_ids
        sides += [0] * C
        # Rejected token 0 is predicted by the last prompt position (P-1), exactly as in the
        # ordinary prompt+rejected sequence; rejected token j>0 by packed position P+C+j-1.
        rows += [b] * R
        preds += [P - 1] + list(range(P + C, P + C + R - 1))
        targets += p.rejected_ids
        sides += [1] * R
    keep = sorted(set(preds))
    col_of = {p: i for i, p in enumerate(keep)}
    return PackedBatch(
        input_ids=ids, position_ids=pos, segments=segs,
        keep_positions=torch.tensor(keep, dtype=torch.long),
        target_row=torch.tensor(rows, dtype=torch.long),
        target_col=torch.tensor([col_of[p] for p in preds], dtype=torch.long),
        target_ids=torch.tensor(targets, dtype=torch.long),
        target_side=torch.tensor(sides, dtype=torch.long),
        records=[p.record for p in pairs],
    )
