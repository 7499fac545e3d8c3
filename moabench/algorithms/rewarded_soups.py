"""Rewarded Soups (Ramé et al., NeurIPS 2023, arXiv 2306.04488).

m experts are fine-tuned from one shared initialisation, expert i on objective i alone; the
policy for a preference w is their weight interpolation (Sec. 3, Eq. 1):

    theta_w = sum_i w_i theta_i,

decoded like any other policy. moabench's experts are the `ls` runs at the simplex vertices
e_1..e_m of the same task, paradigm, seed and task parameters (every one fine-tunes the same
reference), so at w = e_i Rewarded Soups *is* expert i. The interpolation is over every
parameter of the tiny scale's full fine-tune, embeddings and LayerNorms included.

With LoRA the official code averages the adapters' factors separately (its `WeightAverager`
averages `get_peft_model_state_dict`): Delta W(w) = s (sum_i w_i B_i)(sum_j w_j A_j), which has
cross terms B_i A_j and equals the interpolation of the merged weights only when every A_i is the
same. moabench interpolates the merged deltas, Delta W(w) = s sum_i w_i B_i A_i (peft's
`add_weighted_adapter(..., combination_type="cat")`, `moabench.language.steering.adapter_soup`),
the exact weight interpolation; its rank is the sum of the experts' ranks.
"""

from __future__ import annotations

from typing import ClassVar

from moabench.core.algorithm import Paradigm, SteerableMethod, register_algorithm


@register_algorithm("rewarded-soups")
class RewardedSoups(SteerableMethod):
    """Rewarded Soups: interpolate the weights of m single-objective experts (steerable)."""

    home_paradigm: ClassVar[Paradigm | None] = Paradigm.PREFERENCE
    combines: ClassVar[str] = "parameters"
