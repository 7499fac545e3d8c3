"""Evaluation of run records: front metrics, the per-task tables and across-task aggregates, and
their renderings as LEADERBOARD.md, CSV files, a web page and plots.

Results as data: `load_results(folder)` reads a results folder into a pandas DataFrame, one row
per record; `fronts(records)` gives one row per front with every metric, the input of every
statistic of the leaderboard (`moabench.evaluation.frame`).
"""

from moabench.evaluation.frame import fronts, load_results

__all__ = ["fronts", "load_results"]
