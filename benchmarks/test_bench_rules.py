"""Each rule's coefficients from an m x m Gram matrix (target: under 1 ms for m <= 8).

Run: pytest benchmarks/test_bench_rules.py --benchmark-only
"""

import numpy as np
import pytest

from moabench import make_algorithm
from moabench.core.algorithm import algorithms

RULES = ["ls", "mgda", "gapo", "p-gapo", "cagrad", "raco", "dynamic-weighting", "upgrad"]


@pytest.mark.parametrize("m", [2, 3, 4, 8])
@pytest.mark.parametrize("name", RULES)
def test_rule_coefficients(benchmark, name, m):
    assert name in algorithms.names()
    rng = np.random.default_rng(m)
    gradients = rng.normal(size=(m, 64))
    gram = gradients @ gradients.T
    preference = rng.dirichlet(np.ones(m))
    rule = make_algorithm(name, preference)
    benchmark.group = f"m={m}"
    coefficients = benchmark(rule.coefficients, gram, 0.01)
    assert coefficients.shape == (m,) and np.all(np.isfinite(coefficients))


@pytest.mark.parametrize("m", [2, 4, 8, 16])
def test_pama_combination_cost(benchmark, m):
    """PAMA's closed form on a (m, 32 responses, 9 tokens) advantage tensor: O(m) per token."""
    import torch

    from moabench.algorithms.pama import pama_advantage

    advantages = torch.randn(m, 32, 9, generator=torch.Generator().manual_seed(0))
    ratios = torch.ones(32, 9)
    benchmark.group = "pama combination"
    benchmark(pama_advantage, advantages, ratios, torch.ones(32, 9))
