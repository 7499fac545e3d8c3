"""How many seeds a paradigm needs: a power analysis of the leaderboard's paired tests, from the
records' own seed-to-seed noise.

Noise: per task table, the paired (same seed) differences of the score (HV / reference HV, so
that tables share a scale) between every two of its `TOP` best algorithms by mean HV
(`top_differences`); per aggregate (a paradigm, `tables.TaskTable.group`), every such set
centred and pooled (`pooled_residuals`): what a paired difference between top methods varies
by from seed to seed. Their pooled standard deviation about the sets' means is
s = sqrt(sum_sets sum_i (d_i - mean_set)^2 / sum_sets (n_set - 1)).

Power, against a true difference `effect` (a fraction of the reference HV; `EFFECTS`), at a
two-sided level `ALPHA`, for n seeds:
- the paired t-test: P(|T| > t_{1 - ALPHA/2, n-1}), T noncentral t with n - 1 degrees of
  freedom and noncentrality sqrt(n) effect / s (Cohen 1988, Statistical Power Analysis, ch. 2;
  scipy.stats.nct): `t_power`;
- the sign-flip test the leaderboard decides by (`stats.sign_flip_test`): simulated, as it
  assumes no distribution: `SIMULATIONS` samples of n residuals (each set centred at its
  Hodges-Lehmann estimate, the location this test sees) drawn with replacement, shifted by
  `effect`, and the share of them with p < ALPHA in the effect's direction
  (`sign_flip_power`). Its p-value is at least 2 / 2^n, so below 6 seeds its power is 0. On
  skewed noise the mean (the t-test's effect) and the Hodges-Lehmann location differ: each test
  is asked to detect a shift of its own location by `effect`.
`seeds_needed` is the smallest n with power at least `POWER` (80%), searched by bisection
(power grows with n).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from moabench.core.algorithm import Paradigm
from moabench.core.task import tasks
from moabench.evaluation.rankings import seed_matrix
from moabench.evaluation.stats import hodges_lehmann, sign_flip_tests, signed_rank
from moabench.evaluation.tables import TaskTable

ALPHA = 0.05
POWER = 0.8
TOP = 3  # the best algorithms by mean HV whose paired differences make the noise
#: True differences to detect, as fractions of the reference HV: 1% is the TOST margin of
#: "equivalent" (`tables.EQUIVALENCE_MARGIN`); 5% the one the standard seeds are chosen for.
EFFECTS = (0.01, 0.05)
SIMULATIONS = 500
SIGN_FLIP_START = 6  # the fewest seeds whose sign-flip p-value can fall below 0.05 (2/2^6)
POWER_SEED = 0
MOST_SEEDS = 10_000  # the search stops there: "more than" that many
#: Minutes per seed of a sweep on 2 workers (2 cores), measured in the re-run of 2026-12-03
#: (BENCHMARKS.md): the analytic suite 0.26 min (24 seeds in 6.2 min), the language suite
#: 16.4 min (preference 4.4, online 10.9-12.7), shared by its preference and online tables in
#: proportion to their records' wall time (`minutes_per_seed`).
SUITE_MINUTES = {"analytic": 0.26, "language": 16.4}


def t_power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test at level `alpha` with `n` pairs whose differences
    have mean `effect` and standard deviation `sd` (1 when sd is 0 and effect is not)."""
    if n < 2:
        return 0.0
    if sd == 0:
        return 1.0 if effect else alpha
    df, critical = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)
    noncentrality = math.sqrt(n) * effect / sd
    return float(
        stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality)
    )


def sign_flip_power(residuals: np.ndarray, effect: float, n: int, alpha: float = ALPHA) -> float:
    """Simulated power of the sign-flip test with `n` seeds: `SIMULATIONS` samples of `n` of
    `residuals` (located at 0 as the test sees them: `pooled_residuals(sets, hodges_lehmann)`)
    drawn with replacement, from a generator seeded with `POWER_SEED`, each plus `effect` > 0;
    the share whose p-value is below `alpha` with a positive signed-rank sum (its direction)."""
    if 2 / 2**n >= alpha:  # the smallest p-value n seeds allow
        return 0.0
    draws = np.random.default_rng(POWER_SEED).choice(np.asarray(residuals), (SIMULATIONS, n))
    draws += effect
    found = (sign_flip_tests(draws) < alpha) & (signed_rank(draws, axis=1) > 0)
    return float(np.mean(found))


def seeds_needed(
    power: Callable[[int], float], start: int = 2, target: float = POWER
) -> int | None:
    """The smallest n >= `start` with `power(n) >= target` (power growing with n), or None
    beyond `MOST_SEEDS`: n doubles from `start` until it reaches the target, then bisects."""
    low, high = start - 1, start
    while power(high) < target:
        if high >= MOST_SEEDS:
            return None
        low, high = high, min(2 * high, MOST_SEEDS)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if power(middle) >= target else (middle, high)
    return high


def top_differences(values: np.ndarray, top: int = TOP) -> list[np.ndarray]:
    """The paired differences between every two of the `top` columns of `values` (seeds x
    methods, nan where a method lacks a seed) with the highest means, on their shared seeds
    (pairs with fewer than two left out)."""
    values = np.asarray(values, dtype=np.float64)
    means = np.nanmean(values, axis=0)
    best = np.argsort(-means, kind="stable")[:top]
    sets = []
    for i, a in enumerate(best):
        for b in best[i + 1 :]:
            d = values[:, a] - values[:, b]
            d = d[~np.isnan(d)]
            if len(d) >= 2:
                sets.append(d)
    return sets


def pooled_residuals(
    sets: list[np.ndarray], centre: Callable[[np.ndarray], float] = np.mean
) -> tuple[np.ndarray, float]:
    """Every set less its `centre`, concatenated, and the pooled standard deviation of the sets
    about their means (nan without any degree of freedom)."""
    if not sets:
        return np.zeros(0), math.nan
    residuals = np.concatenate([d - centre(d) for d in sets])
    spread = sum(float(np.sum((d - d.mean()) ** 2)) for d in sets)
    df = sum(len(d) - 1 for d in sets)
    return residuals, math.sqrt(spread / df) if df else math.nan


@dataclass(frozen=True)
class PowerRow:
    """One aggregate's seed count for one effect size."""

    group: str
    effect: float  # fraction of the reference HV
    tables: int  # tables with at least two of the top algorithms on two shared seeds
    pairs: int  # difference sets pooled
    sd: float  # pooled SD of a paired score difference
    seeds: int  # the most seeds a ranked algorithm has now
    standard_seeds: int | None  # the standard suite's (`Task.seeds`; None: the task is unknown)
    t_seeds: int | None  # paired t-test: seeds for `POWER` (None: beyond `MOST_SEEDS`)
    sign_flip_seeds: int | None  # sign-flip test, simulated
    minutes_per_seed: float  # sweep wall time on 2 workers


def power_analysis(tables: list[TaskTable], fronts: pd.DataFrame) -> list[PowerRow]:
    """Per aggregate of `tables` with any paired differences between top algorithms, and per
    effect of `EFFECTS`: the seeds each test needs (`fronts`: `frame.fronts`' frame)."""
    by_group: dict[str, list[TaskTable]] = {}
    for table in tables:
        by_group.setdefault(table.group, []).append(table)
    minutes = minutes_per_seed(tables, fronts)
    rows = []
    for group, members in sorted(by_group.items()):
        sets = {}
        for table in members:
            scores = seed_matrix(fronts[fronts["table"] == table.label], "score")
            sets[table.label] = top_differences(scores.to_numpy(dtype=np.float64))
        pooled = [d for found in sets.values() for d in found]
        if not pooled:
            continue
        sd = pooled_residuals(pooled)[1]
        residuals = pooled_residuals(pooled, hodges_lehmann)[0]
        for effect in EFFECTS:
            rows.append(PowerRow(
                group, effect, sum(bool(found) for found in sets.values()), len(pooled), sd,
                max(row.seeds for table in members for row in table.ranked),
                max(filter(None, map(standard_seed_count, members)), default=None),
                seeds_needed(lambda n: t_power(effect, sd, n)),
                seeds_needed(lambda n: sign_flip_power(residuals, effect, n), SIGN_FLIP_START),
                minutes.get(group, math.nan),
            ))  # fmt: skip
    return rows


def standard_seed_count(table: TaskTable) -> int | None:
    """How many seeds the standard suite runs on `table`'s task and paradigm (None: a task that
    is not registered here)."""
    if table.task not in tasks.names():
        return None
    return len(tasks.get(table.task).seeds(Paradigm(table.paradigm)))


def minutes_per_seed(tables: list[TaskTable], fronts: pd.DataFrame) -> dict[str, float]:
    """Per paradigm aggregate (`group` the paradigm alone): the sweep minutes of one seed on 2
    workers, `SUITE_MINUTES` of its suite shared among the suite's paradigms in proportion to
    the wall time their complete fronts record per seed (nan where none is recorded)."""
    paradigm = {t.label: t.paradigm for t in tables if t.group == t.paradigm}
    complete = fronts[fronts["complete"] & fronts["table"].isin(list(paradigm))]
    per_seed = (
        complete.assign(paradigm=complete["table"].map(paradigm))
        .groupby(["paradigm", "seed"])["wall_time"].sum()
        .groupby("paradigm").median()
    )
    suite = {name: "analytic" if name == "analytic" else "language" for name in per_seed.index}
    totals = {s: sum(per_seed[p] for p in per_seed.index if suite[p] == s) for s in SUITE_MINUTES}
    return {
        p: SUITE_MINUTES[suite[p]] * per_seed[p] / totals[suite[p]] if totals[suite[p]] else math.nan
        for p in per_seed.index
    }


#: Header of `power_cells`.
POWER_HEADER = (
    "aggregate", "difference to detect", "tables", "pairs", "SD of a paired difference",
    "seeds now", "standard seeds", "seeds: paired t", "seeds: sign-flip", "min / seed (2 cores)",
    "hours at the sign-flip count",
)  # fmt: skip

#: How to read the power analysis: plain text (the renderers add markup).
LEGEND = (
    f"The seeds a paradigm needs for its tables' paired tests to detect a true HV difference "
    f"between two of the top algorithms with {POWER:.0%} power at the two-sided "
    f"{ALPHA:g} level. Noise: per table, the per-seed differences of HV / reference HV between "
    f"every two of its {TOP} best algorithms by mean HV, each set centred at its own mean, "
    "pooled over the aggregate's tables (SD: their pooled standard deviation). Paired t: "
    "from the noncentral t distribution (Cohen 1988). Sign-flip (the test the tables decide "
    f"by): simulated, {SIMULATIONS} samples of n pooled differences drawn with replacement and "
    "shifted by the difference to detect; it needs at least 6 seeds to reach p < 0.05 at all. "
    "Differences: 1% of the reference HV, the margin of a tie (=), and 5%, the one the "
    "standard seed counts are chosen for (the README's statistics section says why). Minutes "
    "per seed: a sweep on 2 workers (the analytic suite 0.26 min, the language suite 16.4 min "
    "shared by paradigm in proportion to the records' wall time). Standard seeds: those "
    "`moabench sweep` runs by default (`Task.standard_seeds`), the 5% sign-flip counts; where "
    "the records hold fewer, the re-run that brings them there is not finished.",
)


def _count(n: int | None) -> str:
    return f"> {MOST_SEEDS:,}" if n is None else f"{n:,}"


def power_cells(row: PowerRow) -> list[str]:
    """One row of the power table (`POWER_HEADER`)."""
    hours = (
        "-"
        if row.sign_flip_seeds is None or math.isnan(row.minutes_per_seed)
        else f"{row.sign_flip_seeds * row.minutes_per_seed / 60:,.1f}"
    )
    minutes = "-" if math.isnan(row.minutes_per_seed) else f"{row.minutes_per_seed:.1f}"
    standard = "-" if row.standard_seeds is None else str(row.standard_seeds)
    return [
        row.group, f"{row.effect:.0%} of ref. HV", str(row.tables), str(row.pairs),
        f"{row.sd:.3g}", str(row.seeds), standard, _count(row.t_seeds),
        _count(row.sign_flip_seeds), minutes, hours,
    ]  # fmt: skip
