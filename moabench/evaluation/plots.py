"""Front plots: one panel per algorithm, every run's final point coloured by its preference.

Filled markers are the algorithm's non-dominated points, hollow ones dominated; the reference front
is drawn in grey. Two objectives: a scatter coloured by w_1. Three objectives: a 3-D scatter
coloured by the preference as RGB. PNGs are written without metadata so that the same records
give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from moabench.core.task import ObjectiveSpace  # noqa: E402
from moabench.evaluation.metrics import nondominated  # noqa: E402


def _is_nondominated(points_normalised: np.ndarray) -> np.ndarray:
    front = {tuple(p) for p in nondominated(points_normalised)}
    return np.array([tuple(p) in front for p in points_normalised], dtype=bool)


def _axis_labels(space: ObjectiveSpace) -> list[str]:
    return [f"{name} ({'max' if up else 'min'})" for name, up in zip(space.names, space.maximize)]


def plot_fronts(
    title: str,
    space: ObjectiveSpace,
    points_by_algorithm: Mapping[str, tuple[np.ndarray, np.ndarray]],
    reference_front: np.ndarray | None,
    path: Path,
) -> Path:
    """Draw `points_by_algorithm[name] = (raw objective vectors (n, m), preferences (n, m))`."""
    m = space.n_objectives
    if m not in (2, 3):
        raise ValueError(f"front plots support 2 or 3 objectives, not {m}")
    names = sorted(points_by_algorithm)
    columns = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    projection = "3d" if m == 3 else None
    figure = plt.figure(figsize=(3.6 * columns, 3.3 * rows + 0.6))
    figure.suptitle(title)
    labels = _axis_labels(space)
    for index, name in enumerate(names or [""]):
        axes = figure.add_subplot(rows, columns, index + 1, projection=projection)
        if reference_front is not None:
            axes.scatter(*np.asarray(reference_front).T, s=1, color="0.7", label="reference front")
        if name:
            points, preferences = (
                np.asarray(a, dtype=np.float64) for a in points_by_algorithm[name]
            )
            _scatter(axes, space, points, preferences)
            axes.set_title(name, fontsize=10)
        axes.set_xlabel(labels[0], fontsize=8)
        axes.set_ylabel(labels[1], fontsize=8)
        if m == 3:
            axes.set_zlabel(labels[2], fontsize=8)
            axes.view_init(elev=25, azim=45)
        axes.tick_params(labelsize=7)
    if m == 2:
        mappable = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, 1))
        figure.colorbar(
            mappable, ax=figure.axes, label=f"preference weight on {space.names[0]}", shrink=0.8
        )
    else:
        figure.text(0.01, 0.01, "colour = preference (w1, w2, w3) as RGB", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(figure)
    return path


def _scatter(axes, space: ObjectiveSpace, points: np.ndarray, preferences: np.ndarray) -> None:
    if len(points) == 0:
        return
    if space.n_objectives == 2:
        colours = plt.cm.viridis(preferences[:, 0])
    else:
        colours = np.clip(preferences, 0, 1)
    front = _is_nondominated(space.normalize(points))
    for mask, filled in ((front, True), (~front, False)):
        if not mask.any():
            continue
        colour = colours[mask]
        axes.scatter(
            *points[mask].T,
            s=22,
            facecolors=colour if filled else "none",
            edgecolors=colour,
            linewidths=1.0,
            label="non-dominated" if filled else "dominated",
        )
