"""Shared-prefix attention, plugged into transformers through its attention-function registry.

We register one function, ``longreward_shared_prefix``, with ``AttentionInterface.register``.
A model switched to it (``model.set_attn_implementation(ATTENTION_NAME)``) calls it in every
layer with ``query [B, Hq, T, D]``, ``key/value [B, Hkv, T, D]``; our
:class:`~longreward.train.packing.SharedPrefixSpec` arrives as the ``shared_prefix`` keyword
(transformers forwards extra forward kwargs down to the attention function). Because the name is
not registered as a *mask* function, transformers builds no mask of its own (and does not try to
read our restarting position ids as packed sequences), so the spec is the only mask authority.
That is what makes it model-agnostic across the Llama and Qwen2 families (GQA included).

Backends (``--attention``):

``eager_mask``
    SDPA with an explicit boolean ``[T, T]`` mask. Exact; O(T²) memory for the mask. The CPU
    path and the reference for tests.
``flex``
    FlexAttention with a ``BlockMask``: blocks fully in the chosen×rejected rectangle are skipped.
    Measured on an H100 (issue 4; torch 2.11, bf16): 1.09/1.38/1.39× SDPA-over-two-sequences
    at P = 8k/16k/32k.
``split``
    Two SDPA calls per row: ``[prompt|chosen]`` causal (one ordinary causal call), then rejected
    queries against ``[prompt K/V ; rejected K/V]`` with a bottom-right causal mask. Measured
    1.10/1.44/1.70×. The gap to the ideal ~1.97× is the K/V concatenation and the masked (non
    flash) kernel in the second call.
``split_lse``
    Closes that gap: the rejected queries attend to the prompt (no mask: a rectangle) and to
    their own tokens (plain causal, square) in two *flash* calls, merged by log-sum-exp. GQA is
    folded into the query length for the prompt rectangle, so prompt K/V are neither copied nor
    repeated. The backward reuses the flash backward kernel on each part with the *merged*
    output and LSE, which gives exact gradients (the same identity ring attention uses).
    Exact on CPU in tests; **not yet measured on a GPU**, which is why ``auto`` still picks
    ``split`` on CUDA.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .packing import SharedPrefixSpec

ATTENTION_NAME = "longreward_shared_prefix"
_REGISTERED = False


def register_shared_prefix_attention() -> str:
    """Register the attention function with transformers (idempotent); returns its name."""
    global _REGISTERED
    if not _REGISTERED:
        try:
            from transformers import AttentionInterface
        except ImportError:  # registry added in transformers 4.48; logits_to_keep tensors in 4.50
            raise ImportError("longreward train needs transformers>=4.50. "
                              "Fix: pip install -U 'longreward[train]' 'transformers>=4.50'") from None

        AttentionInterface.register(ATTENTION_NAME, shared_prefix_attention)
        _REGISTERED = True
    return ATTENTION_NAME


def resolve_backend(name: str, device: torch.device | str) -> str:
    """``auto`` → ``split`` on CUDA (the best *measured* kernel), ``eager_mask`` elsewhere."""
    dev = torch.device(device)
    if name == "auto":
        return "split" if dev.type == "cuda" else "eager_mask"
    # Named backends are honoured as given. (flex off CUDA runs unfused and has no backward.)
    return name


def shared_prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    shared_prefix: SharedPrefixSpec | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention-interface function; returns ``([B, T, Hq, D], None)``."""
    if kwargs.get("sliding_window"):
        raise ValueError("shared-prefix attention does not support sliding-window layers; "
                         "use a model config with use_sliding_window=false")
    if shared_prefix is None:
        # Not a packed call (e.g. generate() on a saved policy): ordinary causal attention.
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                             is_causal=attention_mask is None and query.shape[2] > 1,
                                             scale=scaling, enable_gqa=key.shape[1] != query.shape[1])
        return out.transpose(1, 2).contiguous(), None
    backend = shared_prefix.backend
    if backend == "eager_mask":
        out = _eager_mask(query, key, value, shared_prefix, scaling)
    elif backend == "flex":
        out = _flex(query, key, value, shared_prefix, scaling)
    elif backend in ("split", "split_lse"):
        out = _split(query, key, value, shared_prefix, scaling, lse=backend == "split_lse")
    else:
        raise ValueError(f"unknown shared-prefix attention backend {backend!r}")
    return out.transpose(1, 2).contiguous(), None


def _eager_mask(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: SharedPrefixSpec,
                scale: float | None) -> torch.Tensor:
    mask = spec.dense_mask(q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale,
                                          enable_gqa=k.shape[1] != q.shape[1])


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: SharedPrefixSpec,
          scale: float | None) -> torch.Tensor:
    from torch.nn.attention.flex_attention import flex_attention

    fn = _compiled_flex() if q.is_cuda else flex_attention
    return fn(q, k, v, block_mask=spec.block_mask(q.device), scale=scale,
              enable_gqa=k.shape[1] != q.shape[1])


_FLEX_COMPILED: Any = None


def _compiled_flex() -> Any:
    global _FLEX_COMPILED
    if _FLEX_COMPILED is None:
        from torch.nn.attention.flex_attention import flex_attention

        _FLEX_COMPILED = torch.compile(flex_attention, dynamic=False)
    return _FLEX_COMPILED


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def _split(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: SharedPrefixSpec,
           scale: float | None, lse: bool) -> torch.Tensor:
    B, Hq, T, D = q.shape
    groups = Hq // k.shape[1]
    scale = D ** -0.5 if scale is None else scale
    rows = []
    for b, s in enumerate(spec.segments):
        P, C, R, L = s.prompt_len, s.chosen_len, s.rejected_len, s.length
        qb, kb, vb = q[b : b + 1], k[b : b + 1], v[b : b + 1]
        # [prompt | chosen] is an ordinary causal sequence: one call, the prompt computed once.
        o_pc = F.scaled_dot_product_attention(qb[:, :, : P + C], kb[:, :, : P + C], vb[:, :, : P + C],
                                              is_causal=True, scale=scale, enable_gqa=groups > 1)
        q_r = qb[:, :, P + C : L]
        # CUDA flash kernels take only fp16/bf16; fp32 on CUDA falls back to the masked call.
        if lse and (not q.is_cuda or q.dtype in (torch.float16, torch.bfloat16)):
            o_r = merged_prefix_attention(q_r, kb[:, :, :P], vb[:, :, :P],
                                          kb[:, :, P + C : L], vb[:, :, P + C : L], scale)
        else:
            k_r = _repeat_kv(torch.cat([kb[:, :, :P], kb[:, :, P + C : L]], dim=2), groups)
            v_r = _repeat_kv(torch.cat([vb[:, :, :P], vb[:, :, P + C : L]], dim=2), groups)
            # Bottom-right causal: rejected query i sees all P prompt keys and rejected keys <= i.
            i = torch.arange(R, device=q.device).view(-1, 1)
            j = torch.arange(P + R, device=q.device).view(1, -1)
            o_r = F.scaled_dot_product_attention(q_r, k_r, v_r, attn_mask=j <= i + P, scale=scale)
        parts = [o_pc, o_r]
        if L < T:  # padding rows of a batch: never read, zeros keep them finite
            parts.append(q.new_zeros(1, Hq, T - L, D))
        rows.append(torch.cat(parts, dim=2))
    return torch.cat(rows, dim=0)


# -- split_lse: flash calls merged by log-sum-exp ------------------------------------------------


def _flash_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
               scale: float) -> tuple[torch.Tensor, torch.Tensor, tuple[Any, ...]]:
    """Flash forward returning ``(out, lse [B,H,L] fp32, aux-for-backward)``."""
    if q.is_cuda:
        out, lse, cu_q, cu_k, max_q, max_k, seed, offset, _ = (
            torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False, scale=scale))
        return out, lse, (cu_q, cu_k, max_q, max_k, seed, offset)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=scale)
    return out, lse, ()


def _flash_bwd(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               out: torch.Tensor, lse: torch.Tensor, causal: bool, scale: float,
               aux: tuple[Any, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if q.is_cuda:
        cu_q, cu_k, max_q, max_k, seed, offset = aux
        return torch.ops.aten._scaled_dot_product_flash_attention_backward(
            dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, 0.0, causal, seed, offset, scale=scale)
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        dout, q, k, v, out, lse, 0.0, causal, scale=scale)


class _MergedPrefixAttention(torch.autograd.Function):
    """softmax over [prompt keys ; own causal keys] for the rejected queries, as two flash calls.

    Forward: o = Σ_i exp(lse_i − lse)·o_i with lse = logaddexp(lse_1, lse_2).
    Backward: flash backward recomputes P_ij = exp(S_ij − lse) and D = rowsum(dO ∘ O); fed the
    merged O and lse, each part's backward returns that part's exact share of dQ, dK, dV.
    """

    @staticmethod
    def forward(ctx: Any, q_r: torch.Tensor, k_p: torch.Tensor, v_p: torch.Tensor,
                k_r: torch.Tensor, v_r: torch.Tensor, scale: float) -> torch.Tensor:
        B, Hq, R, D = q_r.shape
        Hkv = k_p.shape[1]
        G = Hq // Hkv
        # Prompt rectangle has no mask, so the G query heads sharing a KV head can be stacked
        # along the query length: one flash call, K/V of the (long) prompt untouched.
        q_fold = q_r.reshape(B, Hkv, G * R, D)
        o1, lse1, aux1 = _flash_fwd(q_fold, k_p, v_p, False, scale)
        k_re, v_re = _repeat_kv(k_r, G), _repeat_kv(v_r, G)  # R is small: repeating is cheap
        o2, lse2, aux2 = _flash_fwd(q_r, k_re, v_re, True, scale)
        lse1 = lse1[..., : G * R].reshape(B, Hq, R)
        lse2 = lse2[..., :R]
        lse = torch.logaddexp(lse1, lse2)
        w1 = torch.exp(lse1 - lse).unsqueeze(-1)
        w2 = torch.exp(lse2 - lse).unsqueeze(-1)
        out = (o1.reshape(B, Hq, R, D).float() * w1 + o2.float() * w2).to(q_r.dtype)
        ctx.save_for_backward(q_fold, k_p, v_p, q_r, k_re, v_re, out, lse)
        ctx.meta = (scale, G, aux1, aux2, lse1.shape, o1.shape)
        return out

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[Any, ...]:
        q_fold, k_p, v_p, q_r, k_re, v_re, out, lse = ctx.saved_tensors
        scale, G, aux1, aux2, _, fold_shape = ctx.meta
        B, Hq, R, D = q_r.shape
        Hkv = k_p.shape[1]
        dout = dout.contiguous()
        lse_fold = lse.reshape(B, Hkv, G * R).contiguous()
        dq1, dk_p, dv_p = _flash_bwd(dout.reshape(fold_shape), q_fold, k_p, v_p,
                                     out.reshape(fold_shape), lse_fold, False, scale, aux1)
        dq2, dk_re, dv_re = _flash_bwd(dout, q_r, k_re, v_re, out, lse.contiguous(), True, scale, aux2)
        dq = dq1.reshape(B, Hq, R, D) + dq2
        if G > 1:
            dk_r = dk_re.reshape(B, Hkv, G, R, D).sum(2)
            dv_r = dv_re.reshape(B, Hkv, G, R, D).sum(2)
        else:
            dk_r, dv_r = dk_re, dv_re
        return dq, dk_p, dv_p, dk_r, dv_r, None


def merged_prefix_attention(q_r: torch.Tensor, k_p: torch.Tensor, v_p: torch.Tensor,
                            k_r: torch.Tensor, v_r: torch.Tensor, scale: float) -> torch.Tensor:
    """Rejected-answer attention over ``[prompt ; own causal]`` via two flash calls + LSE merge.

    Shapes: ``q_r [B, Hq, R, D]``, ``k_p/v_p [B, Hkv, P, D]``, ``k_r/v_r [B, Hkv, R, D]``.
    """
    return _MergedPrefixAttention.apply(q_r.contiguous(), k_p.contiguous(), v_p.contiguous(),
                                        k_r.contiguous(), v_r.contiguous(), scale)
