"""Loss math of LongReward's DPO stage, as small pure functions of tensors.

Paper §4.1 (following Pang et al. 2024): L = L_DPO + λ·L_CE, with
    L_DPO = −log σ(β·[(π_c − ref_c) − (π_r − ref_r)])
where π_·/ref_· are *summed* answer log-probs under the policy/reference, and L_CE the
negative log-likelihood of the chosen answer. We take L_CE as the token-mean NLL over all
chosen tokens in the batch (TRL's ``sft`` term does the same), so λ does not scale with
answer length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def dpo_loss(policy_c: torch.Tensor, policy_r: torch.Tensor, ref_c: torch.Tensor,
             ref_r: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-pair sigmoid DPO loss ``−log σ(β·[(π_c − ref_c) − (π_r − ref_r)])``, shape ``[B]``."""
    logits = (policy_c - ref_c) - (policy_r - ref_r)
    # logsigmoid is the numerically stable form of log(sigmoid(x)) for large |x|.
    return -F.logsigmoid(beta * logits)


def implicit_rewards(policy: torch.Tensor, ref: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's implicit reward β·(π − ref) per pair (logged, never differentiated)."""
    return beta * (policy - ref).detach()


def chosen_nll(chosen_logp_sum: torch.Tensor, chosen_tokens: torch.Tensor) -> torch.Tensor:
    """Token-mean NLL of the chosen answers: −Σ log p / Σ tokens over the batch."""
    return -chosen_logp_sum.sum() / chosen_tokens.sum().clamp(min=1)


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, differentiable
    dpo: torch.Tensor  # scalar mean DPO loss
    nll: torch.Tensor  # scalar token-mean chosen NLL
    reward_chosen: torch.Tensor  # [B]
    reward_rejected: torch.Tensor  # [B]
    logps_chosen: torch.Tensor  # [B] summed policy log-probs
    logps_rejected: torch.Tensor  # [B]
    #: mean logit over the vocabulary, averaged over the batch's chosen (rejected) answer
    #: tokens: TRL's ``logits/chosen`` (``logits/rejected``); set by the caller that has them
    logits_chosen: float | None = None
    logits_rejected: float | None = None

    def metrics(self) -> dict[str, float]:
        """Under TRL's ``DPOTrainer`` names, so its users read them without a legend
        (``loss`` here is the whole objective, DPO + λ·NLL), plus our two parts."""
        margin = self.reward_chosen - self.reward_rejected
        logits = ({"logits/chosen": self.logits_chosen, "logits/rejected": self.logits_rejected}
                  if self.logits_chosen is not None and self.logits_rejected is not None else {})
        return {
            "loss": float(self.loss.detach()),
            "dpo_loss": float(self.dpo.detach()),
            "nll": float(self.nll.detach()),
            "rewards/chosen": float(self.reward_chosen.mean()),
            "rewards/rejected": float(self.reward_rejected.mean()),
            "rewards/margins": float(margin.mean()),
            "rewards/accuracies": float((margin > 0).float().mean()),
            "logps/chosen": float(self.logps_chosen.detach().float().mean()),
            "logps/rejected": float(self.logps_rejected.detach().float().mean()),
            **logits,
        }


def dpo_ce_loss(policy_c: torch.Tensor, policy_r: torch.Tensor, ref_c: torch.Tensor,
                ref_r: torch.Tensor, chosen_tokens: torch.Tensor, beta: float,
                ce_weight: float) -> LossOutput:
    """``mean_B(dpo_loss) + λ·chosen_nll``: the paper's objective for one micro-batch."""
    dpo = dpo_loss(policy_c, policy_r, ref_c, ref_r, beta).mean()
    nll = chosen_nll(policy_c, chosen_tokens)
    return LossOutput(loss=dpo + ce_weight * nll, dpo=dpo, nll=nll,
                      reward_chosen=implicit_rewards(policy_c, ref_c, beta),
                      reward_rejected=implicit_rewards(policy_r, ref_r, beta),
                      logps_chosen=policy_c, logps_rejected=policy_r)
