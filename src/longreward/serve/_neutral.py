"""The neutral reward: what a sample that cannot be scored receives where the trainer needs a
number (OpenRLHF, slime, verl).

Such a sample must neither be rewarded nor punished. A fixed number cannot do that: the
trainers normalise rewards within a prompt's group of samples (GRPO, RLOO, REINFORCE with a
baseline, Dr. GRPO — OpenRLHF's ``group_norm``/``rloo``/``reinforce_baseline``, slime's
``grpo``, verl's ``grpo``), so a 0 among rewards near 7 gets an advantage of about −2σ, and
slime hands a failed sample −0.71 where the others of its group score 0–10 (issue #15).

The group's mean does: with the failed sample at the mean ``μ`` of its group's judged rewards,
- the group mean stays ``μ``, so the sample's advantage ``(μ − μ)/σ`` is 0 (group
  normalisation), and so is ``μ − mean(others)`` (RLOO's leave-one-out baseline);
- the other samples keep their advantages' signs and order. Only the group's spread shrinks:
  with ``m`` of ``n`` samples at the mean, the others' normalised advantages grow by
  ``√((n−1)/(n−m−1))`` (1.08 for one failure in a group of 8);
- under a batch baseline instead (PPO's critic, REINFORCE++ batch whitening, OpenRLHF's
  ``flash_reinforce``), the running mean below is the best stand-in for the batch mean.

So the neutral reward of a sample of group ``g`` (its prompt id, or its document and question)
is, in this order:
1. ``group``: the mean of ``g``'s judged rewards handed out in the last ``window`` seconds (a
   step's samples of one prompt are scored within minutes; the same prompt comes back in a
   later epoch, when the policy has moved). The mean is only exact once the whole group is
   judged, so the service first waits, within the request's deadline, for ``g``'s samples
   still being scored in this process (OpenRLHF sends each sample as its own request) and,
   when ``group_size`` (the trainer's samples per prompt) is set, until that many samples of
   ``g`` have been seen by any process sharing the run store (at most ``max_wait`` seconds:
   an evaluation may send fewer samples per prompt): a sample that fails at once would
   otherwise be filled before its siblings even arrive;
2. ``running mean``: the mean of the last judged rewards of all prompts (1,000);
3. ``prior``: before any reward was judged at all, ``prior`` (5.0, the middle of the 0–10
   scale). Then every sample so far has failed, and a group whose samples all get the same
   number has no advantage whatever the number.

Samples and their judged rewards are kept in the run store (``served_rewards``), so every
process sharing it — the reward workers of one trainer, several servers — sees the others':
verl sends each sample to a random reward worker. Without ``group_size`` it is not exact: a
sample that fails before its group's other samples are judged (slime and verl send each
sample when its generation ends) gets what has been judged so far, or the running mean.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..store import RunStore


@dataclass(frozen=True)
class Neutral:
    value: float
    #: "group", "running mean" or "prior" (module doc)
    basis: str
    #: judged rewards it is the mean of
    count: int

    def describe(self) -> str:
        if self.basis == "prior":
            return f"prior {self.value:g} (no reward judged yet)"
        return f"{self.basis} {self.value:.4g} of {self.count} judged reward(s)"


class NeutralRewards:
    """Judged rewards by group, and the neutral reward they imply (module doc)."""

    def __init__(self, store: RunStore, *, window: float, prior: float) -> None:
        self.store = store
        self.window = window
        self.prior = prior

    def observe(self, group: str, reward: float | None) -> None:
        """A sample of ``group`` was judged (``reward``) or could not be (None)."""
        self.store.record_reward(group, reward)

    def seen(self, group: str) -> int:
        """Samples of ``group`` seen in the window, judged or not."""
        return self.store.reward_stats(group, time.time() - self.window).group_seen

    def value(self, group: str | None) -> Neutral:
        st = self.store.reward_stats(group or "", time.time() - self.window)
        if group is not None and st.group_judged and st.group_mean is not None:
            return Neutral(float(st.group_mean), "group", st.group_judged)
        if st.running_n and st.running_mean is not None:
            return Neutral(float(st.running_mean), "running mean", st.running_n)
        return Neutral(self.prior, "prior", 0)
