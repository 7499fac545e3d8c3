"""Rankings of one task table's algorithms by a per-seed value, with the uncertainty of the
ranking itself, and the paired comparisons of every two algorithms (estimators: `stats`).

A table ranks twice, each ranking answering its own question (`QUESTIONS`):
- by hypervolume: which algorithm's set of models, one per grid preference, covers the front
  best? A preference-blind algorithm has one model, so it ranks low by construction;
- by utility (`UTILITIES`): which algorithm gives a user the best model for their preference w,
  on average over the grid? Each record is the model trained (or steered) for its w, scored by
  U(f, w) in the normalised space (ideal 0, nadir 1): the weighted sum 1 - w·f and the
  Tchebycheff utility 1 - max_j w_j f_j; a preference-blind algorithm's one model is scored at
  every w like any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from moabench.evaluation.stats import (
    Interval,
    PairedComparison,
    best_set,
    bootstrap_ranks,
    compare,
    deterministic,
    holm,
    t_interval,
)

#: The question each ranking answers.
QUESTIONS = {
    "hypervolume": "Which algorithm's models, one per preference, cover the front best?",
    "weighted_sum_utility": "Which algorithm gives a user the best model for their preference "
    "w, on average over the grid?",
}
#: The utilities: per-front column -> (name, the front metric it is 1 minus).
UTILITIES = {
    "weighted_sum_utility": ("U_ws = 1 - w·f", "inner_product"),
    "tchebycheff_utility": ("U_tch = 1 - max_j w_j f_j", "tchebycheff"),
}


def with_utilities(fronts: pd.DataFrame) -> pd.DataFrame:
    """`fronts` with the utility columns of `UTILITIES` (higher is better)."""
    return fronts.assign(**{name: 1 - fronts[metric] for name, (_, metric) in UTILITIES.items()})


@dataclass(frozen=True)
class Ranking:
    """A table's algorithms ordered by their mean `metric` over seeds (best first), with P(best)
    and the 95% rank interval from a seed bootstrap, the set of algorithms not separated from
    the best (multiple comparisons with the best), and whether seeds add no variance."""

    metric: str
    order: list[str]
    estimate: dict[str, Interval]
    p_best: dict[str, float]
    rank_interval: dict[str, tuple[int, int]]
    best: set[str]
    deterministic: bool


def seed_matrix(fronts: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The complete fronts' `metric`, one row per seed, one column per algorithm (nan where an
    algorithm lacks the seed), columns in name order."""
    complete = fronts[fronts["complete"]]
    return complete.pivot(index="seed", columns="algorithm", values=metric).sort_index(axis=1)


def ranking(fronts: pd.DataFrame, metric: str) -> Ranking:
    """The ranking of one table's complete fronts (`fronts`, with `with_utilities`' columns) by
    `metric`, higher is better."""
    values = seed_matrix(fronts, metric)
    names = [str(name) for name in values.columns]
    matrix = values.to_numpy(dtype=np.float64)
    estimate = {name: t_interval(matrix[:, j]) for j, name in enumerate(names)}
    order = sorted(names, key=lambda name: (-estimate[name].mean, name))
    if not names:
        return Ranking(metric, [], {}, {}, {}, set(), False)
    uncertainty = bootstrap_ranks(matrix)
    keep = best_set(matrix)
    return Ranking(
        metric,
        order,
        estimate,
        {name: float(uncertainty.p_best[j]) for j, name in enumerate(names)},
        {
            name: (int(uncertainty.rank_low[j]), int(uncertainty.rank_high[j]))
            for j, name in enumerate(names)
        },
        {name for j, name in enumerate(names) if keep[j]},
        all(deterministic(matrix[:, j]) for j in range(len(names))),
    )


def comparisons(
    values: pd.DataFrame, pairs: list[tuple[str, str]], margin: float
) -> list[tuple[PairedComparison, float, float]]:
    """Each (a, b) of `pairs` compared on their shared seeds (`values`: `seed_matrix`), with the
    Holm-adjusted sign-flip and t p-values over `pairs` (the family): (comparison, p_holm
    sign-flip, p_holm t). Fewer than two shared seeds: nan p-values."""
    columns = {str(name): j for j, name in enumerate(values.columns)}
    matrix = values.to_numpy(dtype=np.float64)
    results = []
    for a, b in pairs:
        x, y = matrix[:, columns[a]], matrix[:, columns[b]]
        shared = ~np.isnan(x) & ~np.isnan(y)
        results.append(compare(x[shared], y[shared], margin))
    sign_flip = holm([c.p_sign_flip for c in results])
    t = holm([c.p_t for c in results])
    return [(c, float(s), float(p)) for c, s, p in zip(results, sign_flip, t)]


def all_pairs(fronts: pd.DataFrame, metric: str, margin: float) -> pd.DataFrame:
    """Every ordered pair (a, b) of one table's algorithms compared on `metric` (a - b), Holm
    over the table's unordered pairs: one row per ordered pair."""
    values = seed_matrix(fronts, metric)
    names = [str(name) for name in values.columns]
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    rows = []
    for (a, b), (c, p_sign_flip, p_t) in zip(pairs, comparisons(values, pairs, margin)):
        for x, y, sign in ((a, b, 1), (b, a, -1)):
            d = c.difference
            low, high = (d.low, d.high) if sign == 1 else (-d.high, -d.low)
            rows.append({
                "a": x, "b": y, "metric": metric, "shared_seeds": d.n,
                "difference": sign * d.mean, "difference_low": low, "difference_high": high,
                "hodges_lehmann": sign * c.hodges_lehmann, "p_sign_flip": c.p_sign_flip,
                "p_sign_flip_holm": p_sign_flip, "p_t": c.p_t, "p_t_holm": p_t,
                "p_equivalence": c.p_equivalence, "margin": margin, "exact": c.exact,
            })  # fmt: skip
    return pd.DataFrame(rows)


def best_text(probability: float) -> str:
    """P(best) for a table: two decimals, "-" for none."""
    return "-" if math.isnan(probability) else f"{probability:.2f}"
