"""GDPO: group reward-decoupled normalisation (Liu et al. 2026, arXiv 2601.05242), as trl's
`GRPOConfig(multi_objective_aggregation="normalize_then_sum")` computes it.

GRPO on the summed reward gives reward combinations with equal sums, (1, 0) and (0, 1), the same
advantage, and the reward with the largest spread dominates. GDPO normalises each reward within
its group first, then sums, then normalises the sum over the whole rollout:

    z_k = (r_k - mean_group r_k) / (std_group r_k + 1e-4)        (each reward's GRPO advantage)
    s   = sum_k w_k z_k
    A   = (s - mean_batch s) / (std_batch s + 1e-4)

with Bessel-corrected standard deviations, one A per response, then one clipped policy-gradient
loss of A. The last step keeps |A| about 1 whatever w, m and the rewards' correlations, so the
balance against the KL term does not move with w; this is what distinguishes it from
`ls --param order=normalize-then-sum` (sum_k w_k z_k without it). The batch statistics are the
whole rollout's, gathered over the processes and before any micro-batch split
(`Algorithm.rollout_advantage`), never a micro-batch's.
"""

from __future__ import annotations

from typing import ClassVar

from moabench.core.algorithm import Algorithm, Paradigm, register_algorithm

#: trl's epsilon on the batch standard deviation (and moabench's on the group's, `advantages`)
BATCH_EPSILON = 1e-4


@register_algorithm("gdpo")
class GDPO(Algorithm):
    """GDPO: per-reward group-normalised advantages, weighted sum, renormalised over the rollout."""

    paradigms: ClassVar[frozenset[Paradigm]] = frozenset({Paradigm.ONLINE})
    home_paradigm: ClassVar[Paradigm | None] = Paradigm.ONLINE
    #: z_k is GRPO's group normalisation: another advantage estimator is refused
    advantage_estimator: ClassVar[str | None] = "grpo"

    def rollout_advantage(self, advantages):  # noqa: ANN001, ANN201 - torch tensors
        """(m, N) group z-scores z_k -> (1, N): the weighted sum, normalised over the rollout."""
        weights = advantages.new_tensor(self.preference)
        summed = weights @ advantages
        spread = summed.std() if summed.numel() > 1 else summed.new_zeros(())
        return ((summed - summed.mean()) / (spread + BATCH_EPSILON))[None]
