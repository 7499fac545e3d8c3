"""Each algorithm's model at every grid preference w against every other's at the same w and
seed: the comparison a user with preference w makes.

On one table's complete fronts, in the normalised minimisation space (ideal 0, nadir 1), for
every ordered pair (A, B) of algorithms:
- per objective j, the paired difference f_B,j - f_A,j at the same (w, seed), positive where A is
  better: averaged over the grid within each seed, then the mean over seeds with its 95% t
  interval (seeds are the independent units);
- dominance counts: at how many (w, seed) A's point dominates B's, and B's A's, of those compared;
- the set coverage C(A, B) (Zitzler & Thiele 1999, "Multiobjective evolutionary algorithms: a
  comparative case study"): the fraction of B's points weakly dominated by some point of A on
  the same seed, averaged over seeds; C(A, B) = 1 and C(B, A) < 1 says A's front is better.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from moabench.evaluation.frame import rounded_preference, space_of
from moabench.evaluation.stats import t_interval


def point_array(records: pd.DataFrame) -> tuple[list[str], list[int], np.ndarray]:
    """(algorithms, seeds, points): the normalised final points of one table's complete fronts'
    ok runs, points[algorithm, seed, w] of shape (k, seeds, grid, m), nan where there is none
    (a failed run, a seed an algorithm lacks)."""
    ok = records[records["complete"] & (records["status"] == "ok")]
    if ok.empty:
        return [], [], np.zeros((0, 0, 0, 0))
    space = space_of(ok.iloc[0])
    names = sorted(str(a) for a in ok["algorithm"].unique())
    seeds = sorted(int(s) for s in ok["seed"].unique())
    grid = sorted({rounded_preference(w) for w in ok["preference"]})
    points = np.full((len(names), len(seeds), len(grid), space.n_objectives), np.nan)
    normalised = space.normalize(np.asarray(list(ok["objectives"]), dtype=np.float64))
    a = ok["algorithm"].map({name: i for i, name in enumerate(names)}).to_numpy()
    s = ok["seed"].map({seed: i for i, seed in enumerate(seeds)}).to_numpy()
    w = [grid.index(rounded_preference(p)) for p in ok["preference"]]
    points[a, s, w] = normalised
    return names, seeds, points


def dominance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where a dominates b (minimisation), over the last axis: no worse in every objective and
    better in one (False where either is nan)."""
    return np.all(a <= b, axis=-1) & np.any(a < b, axis=-1)


def coverage(a: np.ndarray, b: np.ndarray) -> float:
    """C(A, B): the fraction of the points `b` (n, m) weakly dominated by some point of `a`
    (rows with nan left out; nan when `b` has none)."""
    a, b = a[~np.isnan(a).any(axis=1)], b[~np.isnan(b).any(axis=1)]
    if len(b) == 0:
        return np.nan
    return float(np.mean(np.any(np.all(a[:, None, :] <= b[None, :, :], axis=-1), axis=0)))


def pointwise_pairs(records: pd.DataFrame) -> pd.DataFrame:
    """One row per ordered pair (a, b) of one table's algorithms: per objective the mean
    improvement of a over b at the same (w, seed) with its t interval, dominance counts and
    C(a, b), over the seeds both have complete."""
    names, _, points = point_array(records)
    if not names:
        return pd.DataFrame()
    objectives = space_of(records.iloc[0]).names
    present = ~np.isnan(points).any(axis=-1)  # (k, seeds, grid)
    rows = []
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            seeds = present[i].any(axis=1) & present[j].any(axis=1)
            if i == j or not seeds.any():
                continue
            pa, pb = points[i][seeds], points[j][seeds]  # (seeds, grid, m)
            with warnings.catch_warnings():  # a seed without a shared preference: nan
                warnings.simplefilter("ignore", RuntimeWarning)
                gains = np.nanmean(pb - pa, axis=1)  # (seeds, m), positive where a is better
            row = {
                "a": a, "b": b, "seeds": int(seeds.sum()),
                "compared": int((present[i][seeds] & present[j][seeds]).sum()),
                "a_dominates": int(dominance(pa, pb).sum()),
                "b_dominates": int(dominance(pb, pa).sum()),
                "coverage": float(np.mean([coverage(x, y) for x, y in zip(pa, pb)])),
            }  # fmt: skip
            for m, name in enumerate(objectives):
                gain = t_interval(gains[:, m])
                row |= {f"gain_{name}": gain.mean, f"gain_{name}_low": gain.low,
                        f"gain_{name}_high": gain.high}  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)
