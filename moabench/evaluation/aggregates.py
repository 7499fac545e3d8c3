"""Across-task aggregates (Agarwal et al., "Deep RL at the Edge of the Statistical Precipice",
NeurIPS 2021), computed from the fronts of `frame.fronts`.

A front's score is its hypervolume divided by the hypervolume of its table's reference front (the
exact front where the task has one, else the pinned reference set, else the union of every
complete front), so 1 is the reference and tasks share a scale. Tables are aggregated by paradigm, since the algorithms that
run differ between paradigms and the three kinds of task are not alike: one aggregate for the
analytic tasks, one for the language tasks trained from preference pairs (DPO), one for those
trained online (RL); tables with non-default task parameters (another scale, say) or run on a GPU
make aggregates of their own (`tables.TaskTable.group`).

Per aggregate, over the complete fronts of the algorithms that have at least one on every task of
the aggregate (the others are named, with the tasks they lack):
- the interquartile mean (IQM) of the scores, with a 95% stratified bootstrap interval; beside it
  the mean of task means (tasks weighted equally) with its interval and the mean rank over tasks,
  and which algorithm each of the three puts first (`winners`: the winner may depend on it);
- the probability of improvement P(X > Y) for every pair, with its interval;
- the performance profile: the fraction of runs scoring above tau, with a pointwise band.
Estimators and intervals: `stats`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from moabench.evaluation.stats import (
    BOOTSTRAP_RESAMPLES,
    Interval,
    improvement_interval,
    iqm_interval,
    mean_ranks,
    profile_interval,
    task_mean_interval,
)
from moabench.evaluation.tables import Standings, TaskTable, sweep_command

PROFILE_POINTS = 101  # thresholds tau, evenly spaced from 0 to the largest score (at least 1)

#: How to read the aggregates: plain text (the renderers add markup).
LEGEND = (
    "Across tasks, with the methods of Agarwal et al. (Deep RL at the Edge of the Statistical "
    "Precipice, NeurIPS 2021): each complete front scores its HV divided by its table's "
    "reference HV. Tables pool by paradigm (analytic; language from preference pairs, "
    "preference; language online, online), since different algorithms run in each and the "
    "tasks are unlike; tables with other task parameters, or run on a GPU, pool apart. An "
    "algorithm enters an aggregate when it has complete fronts on every task of it.",
    "IQM: the interquartile mean of all its runs' scores (the mean of the middle half), with a "
    "95% stratified bootstrap interval: each task's seeds resampled independently, percentile "
    f"method, {BOOTSTRAP_RESAMPLES:,} resamples, fixed seed. P(X > Y), the probability of "
    "improvement: the chance that a run of X scores above a run of Y on a task (ties count "
    "half), averaged over tasks, with its interval from the same bootstrap. Performance "
    "profile: the fraction of runs scoring above τ, tasks weighted equally, with a pointwise "
    "95% band. Computed with scipy (the rliable package, which implements the same estimators, "
    "is archived).",
    "The IQM pools every run, so a task with more seeds weighs more, and it trims a quarter "
    "of the runs at each end wherever they fall. Beside it: the mean of task means (each task "
    "weighs the same; its interval from the same bootstrap) and the mean rank (per task the "
    "algorithms ranked by their mean score, 1 best, ties sharing; averaged over tasks: no one "
    "task's scale dominates it). Where the three put different algorithms first, the winner "
    "depends on the estimator and the aggregate says so: read it as no winner.",
)


def empty_note(aggregate: Aggregate) -> str:
    """Why an aggregate has no algorithm."""
    return (
        "Nothing is pooled yet: an algorithm enters when it has a complete front on each of these "
        f"{len(aggregate.tables)} tasks, and none has (below: where each misses one). The sweep "
        "that gives every algorithm here a front on each task:"
    )


def fill_command(aggregate: Aggregate, tables: list[TaskTable]) -> str:
    """The `moabench sweep` that gives every algorithm left out of `aggregate` a front on each
    of its tasks, at the seeds its tables' fronts have."""
    mine = [table for table in tables if table.label in aggregate.tables]
    return sweep_command(mine, set(aggregate.left_out), aggregate.seeds)


@dataclass
class Aggregate:
    group: str  # paradigm, with the task parameters and device that set it apart
    tables: list[str]
    algorithms: list[str]  # by IQM, best first
    left_out: dict[str, list[str]]  # algorithm -> the tables where it has no complete front
    iqm: dict[str, Interval]  # n: runs (complete fronts) over all tasks
    task_mean: dict[str, Interval]  # the mean of task means; n: tasks
    mean_rank: dict[str, float]  # the rank by task mean, averaged over tasks
    improvement: dict[tuple[str, str], Interval]  # (X, Y) -> P(X > Y); n: tasks
    taus: np.ndarray  # the thresholds of the profiles
    profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # (fraction, low, high)
    seeds: list[int]  # the seeds of its tables' fronts, complete or not

    @property
    def winners(self) -> dict[str, str]:
        """The algorithm each estimator puts first: {estimator: algorithm} (empty without any)."""
        if not self.algorithms:
            return {}
        return {
            "IQM": self.algorithms[0],
            "mean of task means": min(self.algorithms, key=lambda a: -self.task_mean[a].mean),
            "mean rank": min(self.algorithms, key=lambda a: self.mean_rank[a]),
        }

    def winner_text(self) -> str:
        """Who wins by each estimator, and whether the winner depends on it."""
        winners = self.winners
        if len(set(winners.values())) == 1:
            return f"Every estimator puts {next(iter(winners.values()))} first."
        named = "; ".join(f"{estimator}: {name}" for estimator, name in winners.items())
        return f"The winner depends on the estimator ({named}): no algorithm wins outright."

    @property
    def slug(self) -> str:
        return "aggregate-" + "".join(c if c.isalnum() or c in "-." else "_" for c in self.group)


def aggregates(standings: Standings) -> list[Aggregate]:
    """One `Aggregate` per group of task tables, in group order."""
    groups: dict[str, list[str]] = {}
    for table in standings.tables:
        groups.setdefault(table.group, []).append(table.label)
    return [aggregate(group, tables, standings.fronts) for group, tables in sorted(groups.items())]


def aggregate(group: str, tables: list[str], fronts: pd.DataFrame) -> Aggregate:
    """The aggregate of `tables` from their fronts (`frame.fronts`; complete ones count)."""
    fronts = fronts[fronts["table"].isin(tables)]
    scored = fronts[fronts["complete"] & np.isfinite(fronts["score"])]
    scores: dict[str, list[np.ndarray]] = {}
    left_out: dict[str, list[str]] = {}
    for algorithm in sorted(fronts["algorithm"].unique()):
        by_table = dict(list(scored[scored["algorithm"] == algorithm].groupby("table")))
        missing = [table for table in tables if table not in by_table]
        if missing:
            left_out[str(algorithm)] = missing
        else:
            scores[str(algorithm)] = [
                by_table[table].sort_values("seed")["score"].to_numpy(np.float64)
                for table in tables
            ]
    iqms = {algorithm: iqm_interval(strata) for algorithm, strata in scores.items()}
    order = sorted(iqms, key=lambda a: (-iqms[a].mean, a))
    task_means = {algorithm: task_mean_interval(strata) for algorithm, strata in scores.items()}
    per_task = np.array([[np.mean(scores[a][t]) for a in order] for t in range(len(tables))])
    ranks = dict(zip(order, map(float, mean_ranks(per_task)))) if order else {}
    improvement = {}
    for i, x in enumerate(order):
        for y in order[i + 1 :]:
            forward = improvement_interval(scores[x], scores[y])
            improvement[(x, y)] = forward  # on the same resamples, P(Y > X) = 1 - P(X > Y)
            improvement[(y, x)] = Interval(
                1 - forward.mean, 1 - forward.high, 1 - forward.low, forward.n
            )
    largest = max([1.0, *(float(np.max(s)) for strata in scores.values() for s in strata)])
    taus = np.linspace(0.0, largest, PROFILE_POINTS)
    profiles = {algorithm: profile_interval(scores[algorithm], taus) for algorithm in order}
    seeds = sorted(int(seed) for seed in fronts["seed"].unique())
    return Aggregate(
        group, tables, order, left_out, iqms, task_means, ranks, improvement, taus, profiles,
        seeds,
    )  # fmt: skip
