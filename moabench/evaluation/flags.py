"""Degenerate results a reader should know of before reading a table's numbers:
- runs that never leave their start: every checkpoint of the record's trajectory, from step 0,
  and its final point are the same (within `STILL`): the model trained is the model it started
  from;
- seeds on which every ranked algorithm's front has hypervolume 0 (every point outside the
  reference box): the seed says nothing about the order;
- a table whose seeds add no variance: every algorithm's hypervolume spreads less than
  `stats.DETERMINISTIC_SD` over seeds, so its differences are exact and no p-value is given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Largest coordinate change (raw units) of a run that "never leaves its start".
STILL = 1e-12


def never_moves(trajectory: tuple, final: tuple | None) -> bool:
    """Whether a run's trajectory (objective vectors from step 0) and final point are all its
    starting point, within `STILL`; a run with fewer than two checkpoints (a steered model,
    which is not trained) is not judged."""
    if len(trajectory) < 2 or final is None:
        return False
    points = np.asarray([*trajectory, final], dtype=np.float64)
    return bool(np.max(np.abs(points - points[0])) <= STILL)


def still_runs(records: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per algorithm with any: (runs that never leave their start, ok runs), over one table's
    complete fronts."""
    ok = records[records["complete"] & (records["status"] == "ok")]
    counts = {}
    for algorithm, group in ok.groupby("algorithm", sort=True):
        still = sum(
            never_moves(trajectory, final)
            for trajectory, final in zip(group["trajectory_objectives"], group["objectives"])
        )
        if still:
            counts[str(algorithm)] = (int(still), len(group))
    return counts


def zero_seeds(fronts: pd.DataFrame) -> list[int]:
    """The seeds on which every algorithm with a complete front there has hypervolume 0."""
    complete = fronts[fronts["complete"]]
    zero = complete.groupby("seed")["hypervolume"].max() == 0
    return [int(seed) for seed in zero[zero].index]
