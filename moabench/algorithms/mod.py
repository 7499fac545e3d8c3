"""MOD: multi-objective decoding (Shi et al., NeurIPS 2024, arXiv 2406.18853).

For KL-regularised experts pi_i = argmax E[r_i] - beta KL(pi || pi_ref) sharing beta and pi_ref,
the optimum of sum_i w_i r_i - beta KL with sum_i w_i = 1 is the geometric mixture (Sec. 4, the
reverse-KL case of the Legendre-transform closed form)

    pi_w(y | x)  ∝  prod_i pi_i(y | x)^{w_i}.

MOD applies it token by token: the next token is drawn from softmax(sum_i w_i log pi_i(. | x, y_<t))
(the official code's `FusionModel` scores tokens by sum_i w_i log pi_i), which ignores each
prefix's normaliser and so is not the sequence-level optimum. moabench's experts are the `ls`
runs at the simplex vertices (DPO experts on preference pairs, MORLHF ones online; every expert
shares beta and the reference), and it samples at the evaluation's temperature like every other
method, where the official evaluation decodes greedily. A token costs m forward passes; at the
Hugging Face scales the experts are LoRA adapters of one base model, switched with peft's
`set_adapter` before each expert's pass, as the official code does (`moabench.language.steering`).
"""

from __future__ import annotations

from typing import ClassVar

from moabench.core.algorithm import Paradigm, SteerableMethod, register_algorithm


@register_algorithm("mod")
class MultiObjectiveDecoding(SteerableMethod):
    """MOD: sample from sum_i w_i log pi_i of m single-objective experts, per token (steerable)."""

    home_paradigm: ClassVar[Paradigm | None] = Paradigm.PREFERENCE
    combines: ClassVar[str] = "log_probs"
