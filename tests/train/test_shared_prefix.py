"""The shared-prefix pass must be the same function as two ordinary forward passes."""

from __future__ import annotations

import random

import pytest
import torch
from lr_train_helpers import make_model

from longreward.train.attention import merged_prefix_attention, register_shared_prefix_attention
from longreward.train.data import TokenizedPair
from longreward.train.logprobs import answer_logps, ordinary_answer_logps
from longreward.train.packing import pack_pairs

EXACT_BACKENDS = ["eager_mask", "split", "split_lse"]


def _pairs(spec=((40, 7, 5), (23, 3, 11)), seed=0) -> list[TokenizedPair]:
    rng = random.Random(seed)
    tok = lambda n: [rng.randrange(7, 180) for _ in range(n)]  # noqa: E731
    return [TokenizedPair(tok(p), tok(c), tok(r), f"r{i}") for i, (p, c, r) in enumerate(spec)]


def _plain(model, prompt_ids, answer_ids):
    """An ordinary prompt+answer pass of the unmodified model (transformers' own eager
    attention, default positions, full logits), scored with torch's cross-entropy: nothing
    of longreward's code is on this path, so a shared bug cannot cancel out."""
    ids = torch.tensor([prompt_ids + answer_ids])
    logits = model(input_ids=ids, use_cache=False).logits[0, len(prompt_ids) - 1 : -1]
    return -torch.nn.functional.cross_entropy(logits, ids[0, len(prompt_ids):], reduction="sum")


def _two_pass(model, pairs):
    model.set_attn_implementation("eager")
    c = torch.stack([_plain(model, p.prompt_ids, p.chosen_ids) for p in pairs])
    r = torch.stack([_plain(model, p.prompt_ids, p.rejected_ids) for p in pairs])
    return c, r


def test_ordinary_answer_logps_is_the_plain_two_pass_baseline(family):
    # The benchmark checks itself against ordinary_answer_logps; it must be the plain pass.
    model = make_model(family)
    model.set_attn_implementation("eager")
    (p,) = _pairs(((30, 6, 4),))
    with torch.no_grad():
        torch.testing.assert_close(ordinary_answer_logps(model, p.prompt_ids, p.chosen_ids),
                                   _plain(model, p.prompt_ids, p.chosen_ids), rtol=1e-5, atol=1e-5)


def _packed(model, pairs, backend):
    model.set_attn_implementation(register_shared_prefix_attention())
    lp = answer_logps(model, pack_pairs(pairs), backend)
    return lp.chosen, lp.rejected


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_logps_and_grads_match_two_ordinary_passes(family, backend):
    model = make_model(family)
    pairs = _pairs(((40, 7, 5),))
    c_ref, r_ref = _two_pass(model, pairs)
    # Weight the two answers differently so a mix-up between them would show in the grads.
    (c_ref.sum() + 0.7 * r_ref.sum()).backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    c, r = _packed(model, pairs, backend)
    (c.sum() + 0.7 * r.sum()).backward()
    torch.testing.assert_close(c, c_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(r, r_ref, rtol=1e-4, atol=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("backend", [*EXACT_BACKENDS, "flex"])
def test_batch_of_pairs_with_padding_matches(family, backend):
    model = make_model(family, seed=1)
    pairs = _pairs()
    with torch.no_grad():  # FlexAttention has no CPU backward; forward exactness is what counts
        c_ref, r_ref = _two_pass(model, pairs)
        c, r = _packed(model, pairs, backend)
    torch.testing.assert_close(c, c_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(r, r_ref, rtol=1e-4, atol=1e-5)


def test_logits_only_at_answer_positions():
    model = make_model("llama")
    model.set_attn_implementation(register_shared_prefix_attention())
    pairs = _pairs(((60, 4, 6),))
    seen = []
    model.lm_head.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    answer_logps(model, pack_pairs(pairs), "eager_mask")
    # 4 chosen + 6 rejected targets; the first rejected token shares the last prompt position.
    assert seen == [(1, 4 + 6 - 1, model.config.vocab_size)]


def test_packing_layout():
    b = pack_pairs(_pairs(((5, 2, 3),)))
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 6, 5, 6, 7]]
    mask = b.spec("eager_mask").dense_mask(torch.device("cpu"))[0, 0]
    assert not mask[7:, 5:7].any()  # rejected never sees chosen
    assert mask[7:, :5].all()  # ... but sees the whole prompt
    assert mask[5, :6].all() and not mask[5, 6:].any()  # chosen: plain causal
    assert mask[9, :5].all() and mask[9, 7:].all()  # last rejected: prompt + all rejected


@pytest.mark.parametrize("groups", [1, 3])
def test_merged_prefix_attention_is_exact(groups):
    torch.manual_seed(0)
    B, Hkv, P, R, D = 1, 2, 17, 6, 8
    Hq = Hkv * groups
    q = torch.randn(B, Hq, R, D, dtype=torch.float64).float().requires_grad_()
    k = torch.randn(B, Hkv, P + R, D).requires_grad_()
    v = torch.randn(B, Hkv, P + R, D).requires_grad_()
    out = merged_prefix_attention(q, k[:, :, :P], v[:, :, :P], k[:, :, P:], v[:, :, P:], D ** -0.5)
    i = torch.arange(R).view(-1, 1)
    j = torch.arange(P + R).view(1, -1)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1), attn_mask=j <= i + P)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    ref_grads = torch.autograd.grad(ref, (q, k, v), g)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
