"""The leaderboard's statistics, on plain arrays (numpy and scipy only).

Per task, over one algorithm's seeds:
- `t_interval`: the mean and its 95% Student t interval, mean +- t_{0.975, n-1} s / sqrt(n).
  Valid from two seeds on for roughly normal per-seed values; a percentile bootstrap is not (with
  three seeds it can only return the seeds' range, which covers a normal mean about 75% of the
  time, not 95%).
- `paired_t_test`: an algorithm against the leader on the seeds both ran. Seeds are shared
  (the same starting points and reference policies), so the test is on per-seed differences:
  two-sided paired t-test, for a reader who accepts normality; the tables decide by the exact
  signed-rank test below, whose p-value is at least 2 / 2^n (0.0625 at 5 seeds), so that it
  separates nothing below 6 seeds.
- `sign_flip_test` and `hodges_lehmann`: the robust pair beside it. The paired permutation test
  flips the signs of the differences (under "no difference" each sign is a fair coin) and
  compares the signed-rank statistic sum_i sign(d_i) rank(|d_i|) with all 2^n flips (Wilcoxon's
  exact signed-rank test, ties and zeros included; enumerated in numpy as
  scipy.stats.permutation_test does, which the tests check, at 1/100 of its cost). One seed lost
  by a lot cannot outvote nine won by a little, as it does the t-test's mean. Its p-value cannot
  fall below 2 / 2^n (0.125 at 4 seeds): few seeds cannot separate without the t-test's
  normality.
  Its effect size is the Hodges-Lehmann estimate, the median of the Walsh averages
  (d_i + d_j) / 2, i <= j (Hodges & Lehmann 1963), the estimate the signed-rank test inverts.
- `equivalence_test`: two one-sided paired t-tests (TOST, Schuirmann 1987) of |mean| >= margin;
  p < 0.05 says the mean difference is within +-margin (the 90% t interval lies inside it).
- `deterministic`: values whose spread over seeds is below `DETERMINISTIC_SD`: seeds add no
  variance, so a p-value would only measure floating-point noise.
- `bootstrap_ranks`: the rank of each of k methods in seed resamples (seeds resampled jointly,
  as they are shared): the probability of being best and a 95% rank interval.
- `best_set`: Hsu's multiple comparisons with the best (Hsu 1984, "Constrained simultaneous
  confidence intervals for multiple comparisons with the best"), paired by seed, Bonferroni over
  the k - 1 comparisons: the methods not separated from the best, a set that holds the truly
  best with probability at least 95% (when the paired differences are roughly normal).
- `holm`: Holm's step-down adjustment (Holm 1979, "A simple sequentially rejective multiple test
  procedure"), which controls the family-wise error over a table's comparisons with the leader
  without assuming they are independent (they share the leader).

Across tasks (Agarwal et al., "Deep RL at the Edge of the Statistical Precipice", NeurIPS 2021),
on scores normalised per task; a *stratum* is one task's per-seed scores of one algorithm:
- `iqm`: the interquartile mean, scipy's 25% trimmed mean over every run of every task (as the
  paper's reference implementation, rliable, computes it). It weights tasks by their runs, and
  drops a quarter of the runs at each end, wherever they fall.
- `task_mean_interval`: the mean over tasks of each task's mean, tasks weighted equally.
- `mean_ranks`: per task the algorithms ranked by their task mean (1 = best, ties share the
  average rank), the ranks averaged over tasks: an aggregate that no one task's scale dominates.
- `probability_of_improvement`: P(X > Y) = 1/M sum_m P(X_m > Y_m), with P(X_m > Y_m) the
  Mann-Whitney statistic of task m's runs, 1/(N K) sum_i sum_j S(x_i, y_j), S = 1 when
  x_i > y_j, 1/2 when equal, 0 otherwise (the paper's Section 4.3).
- `performance_profile`: the score distribution F(tau) = 1/M sum_m 1/N sum_n 1[x_{m,n} > tau],
  the fraction of runs above tau, tasks weighted equally (the paper's Section 4.2).
- `stratified_interval`: their 95% intervals by the stratified percentile bootstrap, each task's
  runs resampled independently (scipy.stats.bootstrap resamples each of several samples
  independently, which is exactly the stratified bootstrap), `BOOTSTRAP_RESAMPLES` resamples
  from a generator seeded with `BOOTSTRAP_SEED` afresh for every interval, so each interval is
  a pure function of its data.

rliable implements the same estimators, but its repository is archived (October 2025) and it
pulls in arch, seaborn and absl-py; the few lines here rest on scipy, which moabench already uses.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import stats

BOOTSTRAP_SEED = 0
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
#: Seeds add no variance below this standard deviation (HV units of the normalised space).
DETERMINISTIC_SD = 1e-4


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval (nan where there is none) from `n` values."""

    mean: float
    low: float
    high: float
    n: int

    def __format__(self, spec: str) -> str:
        """ "mean [low, high]" with `spec` for each number (default ".4g"), the mean alone
        without an interval (one value), "-" without an estimate."""
        spec = spec or ".4g"
        if math.isnan(self.mean):
            return "-"
        if math.isnan(self.low):
            return f"{self.mean:{spec}}"
        return f"{self.mean:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def __str__(self) -> str:
        return format(self)


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    return data[~np.isnan(data)]


def t_interval(values: Sequence[float] | np.ndarray) -> Interval:
    """Mean of the non-nan `values` and its 95% Student t interval (none from one value)."""
    data = _finite(values)
    n = len(data)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(data.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    half_width = _t_quantile(n - 1) * float(data.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half_width, mean + half_width, n)


@cache
def _t_quantile(degrees_of_freedom: int, level: float = (1 + CONFIDENCE) / 2) -> float:
    """t_{level, df}; by default t_{0.975, df}: 4.303 for 2 degrees of freedom, 2.262 for 9."""
    return float(stats.t.ppf(level, degrees_of_freedom))


@dataclass(frozen=True)
class PairedTest:
    """`a - b` over paired values: mean difference and its 95% t interval; two-sided p-value
    (nan with fewer than two pairs)."""

    difference: Interval
    p_value: float


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Two-sided paired t-test of `a` against `b` (same length, paired by position). Equal
    differences have no spread: p = 1 when they are all zero, 0 otherwise."""
    differences = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    interval = t_interval(differences)
    if len(differences) < 2:
        return PairedTest(interval, math.nan)
    if np.ptp(differences) == 0:
        return PairedTest(interval, 1.0 if differences[0] == 0 else 0.0)
    standard_error = float(differences.std(ddof=1)) / math.sqrt(len(differences))
    t = abs(float(differences.mean())) / standard_error
    return PairedTest(interval, float(2 * stats.t.sf(t, len(differences) - 1)))


def hodges_lehmann(differences: Sequence[float] | np.ndarray) -> float:
    """The median of the Walsh averages (d_i + d_j) / 2, i <= j, of the non-nan `differences`
    (nan without any)."""
    d = _finite(differences)
    if len(d) == 0:
        return math.nan
    i, j = np.triu_indices(len(d))
    return float(np.median((d[i] + d[j]) / 2))


def signed_rank(d: np.ndarray, axis: int = -1) -> np.ndarray:
    """sum_i sign(d_i) rank(|d_i|), average ranks for ties (a zero adds nothing)."""
    return np.sum(np.sign(d) * stats.rankdata(np.abs(d), axis=axis), axis=axis)


@cache
def _sign_flips(n: int) -> np.ndarray:
    """Every one of the 2^n sign vectors of length n, (2^n, n); random ones beyond n = 16
    (`BOOTSTRAP_RESAMPLES`, from `BOOTSTRAP_SEED`)."""
    if n > 16:
        return np.random.default_rng(BOOTSTRAP_SEED).choice([-1.0, 1.0], (BOOTSTRAP_RESAMPLES, n))
    return 1.0 - 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)


def sign_flip_test(differences: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of the paired permutation test of the non-nan `differences`: the
    signed-rank statistic against every one of the 2^n sign flips, 2 min(P(T <= t), P(T >= t))
    as scipy.stats.permutation_test gives it (n <= 16; random flips beyond). nan with fewer
    than two differences."""
    d = _finite(differences)
    if len(d) < 2:
        return math.nan
    return float(sign_flip_tests(d[None, :])[0])


def sign_flip_tests(differences: np.ndarray) -> np.ndarray:
    """`sign_flip_test` of every row of `differences` (s samples x n >= 2 differences, no nan)
    at once: shape (s,)."""
    d = np.asarray(differences, dtype=np.float64)
    signed = np.sign(d) * stats.rankdata(np.abs(d), axis=1)
    observed, flips = signed.sum(axis=1), _sign_flips(d.shape[1])
    p = np.empty(len(d))
    rows = max(1, 2**22 // len(flips))  # about 32 MB of flipped sums at a time
    for start in range(0, len(d), rows):
        part = slice(start, start + rows)
        flipped = signed[part] @ flips.T
        reached = observed[part, None]
        tolerance = 1e-9 * np.maximum(1.0, np.abs(reached))  # equal sums up to rounding count
        below = np.mean(flipped <= reached + tolerance, axis=1)
        above = np.mean(flipped >= reached - tolerance, axis=1)
        p[part] = np.minimum(1.0, 2 * np.minimum(below, above))
    return p


def equivalence_test(differences: Sequence[float] | np.ndarray, margin: float) -> float:
    """p-value of two one-sided paired t-tests (TOST) that the mean of the non-nan
    `differences` lies within (-margin, margin): the larger of the two one-sided p-values.
    Equal differences have no spread: p = 0 inside the margin, 1 outside; nan from one value."""
    d = _finite(differences)
    if len(d) < 2:
        return math.nan
    if np.ptp(d) == 0:
        return 0.0 if abs(d[0]) < margin else 1.0
    standard_error = float(d.std(ddof=1)) / math.sqrt(len(d))
    mean, df = float(d.mean()), len(d) - 1
    above = stats.t.sf((mean + margin) / standard_error, df)  # H0: mean <= -margin
    below = stats.t.cdf((mean - margin) / standard_error, df)  # H0: mean >= margin
    return float(max(above, below))


def deterministic(values: Sequence[float] | np.ndarray) -> bool:
    """Whether two or more non-nan `values` spread less than `DETERMINISTIC_SD` (sample SD)."""
    data = _finite(values)
    return len(data) >= 2 and float(data.std(ddof=1)) < DETERMINISTIC_SD


@dataclass(frozen=True)
class RankUncertainty:
    """Per method, over seed resamples: P(best) (ties share it) and the 95% interval of its
    rank (1 = best, ties take the best rank they share)."""

    p_best: np.ndarray
    rank_low: np.ndarray
    rank_high: np.ndarray


def bootstrap_ranks(values: np.ndarray) -> RankUncertainty:
    """Rank uncertainty of k methods from `values` (n seeds, k methods; higher is better; nan
    where a method lacks a seed): the seeds resampled with replacement, jointly for every
    method, `BOOTSTRAP_RESAMPLES` times from `BOOTSTRAP_SEED`; each resample ranks the methods'
    means over the seeds they have (a method with none in a resample ranks last)."""
    values = np.asarray(values, dtype=np.float64)
    n, k = values.shape
    picks = np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, (BOOTSTRAP_RESAMPLES, n))
    with warnings.catch_warnings():  # a method without any seed in a resample: nan, ranked last
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(values[picks], axis=1)  # (resamples, k)
    means = np.where(np.isnan(means), -np.inf, means)
    ranks = stats.rankdata(-means, method="min", axis=1)
    best = means == means.max(axis=1, keepdims=True)
    p_best = (best / best.sum(axis=1, keepdims=True)).mean(axis=0)
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(ranks, [tail, 1 - tail], axis=0, method="inverted_cdf")
    return RankUncertainty(p_best, low.astype(int), high.astype(int))


def best_set(values: np.ndarray) -> np.ndarray:
    """Which of k methods (`values`: n seeds x k, higher is better, nan where a method lacks a
    seed) are not separated from the best by multiple comparisons with the best: method i
    leaves the set when some j beats it on their shared seeds by more than
    t_{1 - 0.05/(k-1), n-1} times the standard error of the paired differences (Bonferroni over
    the k - 1 comparisons that decide i). Fewer than two shared seeds separate nothing; equal
    differences (no spread) separate exactly."""
    values = np.asarray(values, dtype=np.float64)
    k = values.shape[1]
    keep = np.ones(k, dtype=bool)
    for i in range(k):
        for j in range(k):
            shared = ~np.isnan(values[:, i]) & ~np.isnan(values[:, j])
            d = values[shared, j] - values[shared, i]
            if i == j or len(d) < 2:
                continue
            quantile = _t_quantile(len(d) - 1, 1 - (1 - CONFIDENCE) / (k - 1))
            if d.mean() - quantile * d.std(ddof=1) / math.sqrt(len(d)) > 0:
                keep[i] = False
                break
    return keep


@dataclass(frozen=True)
class PairedComparison:
    """`a - b` on their shared seeds: the mean difference with its 95% paired t interval and
    p-value, the Hodges-Lehmann estimate with the sign-flip test's p-value, and the TOST p-value
    for |mean| < margin. `exact`: the differences have no spread (`deterministic`), so the
    p-values (nan then) would only measure floating-point noise."""

    difference: Interval
    p_t: float
    hodges_lehmann: float
    p_sign_flip: float
    p_equivalence: float
    exact: bool


def compare(a: Sequence[float], b: Sequence[float], margin: float) -> PairedComparison:
    """Every paired statistic of `a - b` (same length, paired by position)."""
    differences = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    test = paired_t_test(a, b)
    if deterministic(differences):
        inside = abs(test.difference.mean) < margin
        return PairedComparison(
            test.difference, math.nan, hodges_lehmann(differences), math.nan,
            0.0 if inside else 1.0, True,
        )  # fmt: skip
    return PairedComparison(
        test.difference, test.p_value, hodges_lehmann(differences), sign_flip_test(differences),
        equivalence_test(differences, margin), False,
    )  # fmt: skip


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values: the i-th smallest of m becomes max_{j <= i} min(1, (m - j + 1) p_(j)).
    Rejecting where the adjusted value is below alpha controls the family-wise error at alpha.
    nan entries (comparisons that could not be made) stay nan and do not count in m."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    running = 0.0
    for j, index in enumerate(order):
        running = max(running, min(1.0, (m - j) * p[index]))
        adjusted[index] = running
    return adjusted


def iqm(scores: Sequence[float] | np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle half (scipy's 25% trimmed mean; it drops
    int(n / 4) values at each end)."""
    return stats.trim_mean(scores, proportiontocut=0.25, axis=axis)


def probability_of_improvement(
    x_strata: Sequence[np.ndarray], y_strata: Sequence[np.ndarray], axis: int = -1
) -> np.ndarray | float:
    """P(X > Y): per task the probability that a run of X beats a run of Y (ties count 1/2),
    averaged over tasks. `x_strata[m]`, `y_strata[m]`: task m's runs along `axis`."""
    per_task = []
    for x, y in zip(x_strata, y_strata):
        x, y = np.moveaxis(np.asarray(x), axis, -1), np.moveaxis(np.asarray(y), axis, -1)
        x, y = x[..., :, None], y[..., None, :]
        per_task.append(((x > y) + 0.5 * (x == y)).mean(axis=(-2, -1)))
    return np.mean(per_task, axis=0)


def performance_profile(
    strata: Sequence[np.ndarray], taus: np.ndarray, axis: int = -1
) -> np.ndarray:
    """The fraction of runs scoring above each of `taus`, per task, averaged over tasks: shape
    (len(taus), ...) for strata whose runs lie along `axis`."""
    taus = np.asarray(taus, dtype=np.float64)
    per_task = []
    for scores in strata:
        scores = np.moveaxis(np.asarray(scores), axis, -1)
        above = scores[..., None, :] > taus[:, None]  # (..., taus, runs)
        per_task.append(np.moveaxis(above.mean(axis=-1), -1, 0))
    return np.mean(per_task, axis=0)


def stratified_interval(
    statistic: Callable[..., np.ndarray], strata: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray] | None:
    """95% stratified percentile-bootstrap interval of `statistic(*strata, axis=-1)`: every
    stratum's values resampled independently, `BOOTSTRAP_RESAMPLES` times, from a generator
    seeded with `BOOTSTRAP_SEED`. None when a stratum has fewer than two values (resampling one
    value would pretend certainty)."""
    strata = tuple(np.asarray(s, dtype=np.float64) for s in strata)
    if any(len(s) < 2 for s in strata):
        return None
    result = stats.bootstrap(
        strata, statistic, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE,
        method="percentile", vectorized=True, rng=np.random.default_rng(BOOTSTRAP_SEED),
    )  # fmt: skip
    return np.asarray(result.confidence_interval.low), np.asarray(result.confidence_interval.high)


def iqm_interval(strata: Sequence[np.ndarray]) -> Interval:
    """IQM of every run of every stratum, with its stratified bootstrap interval."""
    pooled = np.concatenate([np.asarray(s, dtype=np.float64) for s in strata])
    if len(pooled) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    bounds = stratified_interval(
        lambda *samples, axis: iqm(np.concatenate(samples, axis=axis), axis=axis), strata
    )
    low, high = (math.nan, math.nan) if bounds is None else map(float, bounds)
    return Interval(float(iqm(pooled)), low, high, len(pooled))


def task_mean_interval(strata: Sequence[np.ndarray]) -> Interval:
    """The mean over strata of each stratum's mean, with its stratified bootstrap interval;
    n is the number of strata."""
    if not strata:
        return Interval(math.nan, math.nan, math.nan, 0)
    bounds = stratified_interval(
        lambda *samples, axis: np.mean([s.mean(axis=axis) for s in samples], axis=0), strata
    )
    low, high = (math.nan, math.nan) if bounds is None else map(float, bounds)
    point = float(np.mean([np.mean(s) for s in strata]))
    return Interval(point, low, high, len(strata))


def mean_ranks(task_means: np.ndarray) -> np.ndarray:
    """The average over tasks (rows) of each algorithm's (column's) rank by its task mean,
    higher better: 1 for the best, ties sharing the average of their ranks."""
    return stats.rankdata(-np.asarray(task_means, dtype=np.float64), axis=1).mean(axis=0)


def improvement_interval(
    x_strata: Sequence[np.ndarray], y_strata: Sequence[np.ndarray]
) -> Interval:
    """P(X > Y) with its stratified bootstrap interval (each task's runs of X and of Y
    resampled independently); n is the number of tasks."""
    m = len(x_strata)
    point = float(probability_of_improvement(x_strata, y_strata))
    bounds = stratified_interval(
        lambda *samples, axis: probability_of_improvement(samples[:m], samples[m:], axis=axis),
        [*x_strata, *y_strata],
    )
    low, high = (math.nan, math.nan) if bounds is None else map(float, bounds)
    return Interval(point, low, high, m)


def profile_interval(
    strata: Sequence[np.ndarray], taus: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The performance profile at `taus` and its pointwise stratified bootstrap band
    (low, high; nan where a stratum has fewer than two runs)."""
    point = performance_profile(strata, taus)
    bounds = stratified_interval(
        lambda *samples, axis: performance_profile(samples, taus, axis=axis), strata
    )
    if bounds is None:
        return point, np.full_like(point, math.nan), np.full_like(point, math.nan)
    return point, bounds[0], bounds[1]
