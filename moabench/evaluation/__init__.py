"""Evaluation of run records: front metrics, the per-task tables, and their renderings as
LEADERBOARD.md, a web page and front plots."""
