"""Loss math on hand-made tensors."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from longreward.train.loss import chosen_nll, dpo_ce_loss, dpo_loss  # noqa: E402


def test_dpo_loss_matches_formula():
    pc = torch.tensor([-10.0, -3.0])
    pr = torch.tensor([-12.0, -2.0])
    rc = torch.tensor([-11.0, -3.5])
    rr = torch.tensor([-11.5, -2.5])
    beta = 0.15
    got = dpo_loss(pc, pr, rc, rr, beta)
    want = [-math.log(1 / (1 + math.exp(-beta * ((a - c) - (b - d)))))
            for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist(), strict=True)]
    torch.testing.assert_close(got, torch.tensor(want))
    # Equal policy and reference: log 2, whatever the answers.
    torch.testing.assert_close(dpo_loss(pc, pr, pc, pr, beta), torch.full((2,), math.log(2.0)))


def test_dpo_loss_is_stable_for_large_margins():
    big = torch.tensor([1e4])
    zero = torch.zeros(1)
    assert torch.isfinite(dpo_loss(zero, big, zero, zero, 1.0)).all()
    assert dpo_loss(big, zero, zero, zero, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_dpo_ce_loss_combines_with_token_mean_nll():
    pc = torch.tensor([-8.0, -2.0], requires_grad=True)
    pr = torch.tensor([-9.0, -1.0])
    rc = torch.tensor([-8.5, -2.0])
    rr = torch.tensor([-8.0, -1.5])
    ntok = torch.tensor([4, 1])
    out = dpo_ce_loss(pc, pr, rc, rr, ntok, beta=0.15, ce_weight=0.1)
    dpo = dpo_loss(pc, pr, rc, rr, 0.15).mean()
    nll = (8.0 + 2.0) / 5  # −Σ log p over all chosen tokens / number of chosen tokens
    assert out.nll.item() == pytest.approx(nll)
    assert out.loss.item() == pytest.approx(dpo.item() + 0.1 * nll)
    assert chosen_nll(pc, ntok).item() == pytest.approx(nll)
    m = out.metrics()
    # TRL DPOTrainer's names and meanings
    assert m["rewards/chosen"] == pytest.approx(0.15 * (0.5 + 0.0) / 2)
    assert m["rewards/rejected"] == pytest.approx(0.15 * (-1.0 + 0.5) / 2)
    assert m["rewards/margins"] == pytest.approx(m["rewards/chosen"] - m["rewards/rejected"])
    assert m["rewards/accuracies"] == 0.5  # pair 1 has margin 0 - 0.075 < 0
    assert m["logps/chosen"] == pytest.approx(-5.0) and m["logps/rejected"] == pytest.approx(-5.0)
    assert m["dpo_loss"] == pytest.approx(dpo.item()) and m["nll"] == pytest.approx(nll)
    out.loss.backward()
    assert pc.grad is not None and torch.isfinite(pc.grad).all()
