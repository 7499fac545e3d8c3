"""The leaderboard's figures, in raw objective units, from complete fronts only.

- `plot_overlay`: per task, every algorithm's front on one set of axes, over the reference front
  (the exact one, the pinned set, or the union of every complete front) in grey. An algorithm's
  front is that of its median seed by hypervolume (the lower middle one for an even number of
  seeds): its non-dominated points, with the staircase that bounds what they dominate for two
  objectives. Which front dominates where can be read off one picture.
- `plot_fronts`: small multiples, one panel per algorithm on shared axes: every seed's final
  points, coloured by preference, filled where non-dominated within their seed's front and
  hollow where dominated; partial fronts (not ranked) in panels of their own, titled so.
- `plot_compute`: per task, each algorithm's mean hypervolume (with its interval over seeds)
  against the training compute of its front, in gradient evaluations on a log axis: every
  distinct training counted once (11 runs for a per-preference front of 11 points, the 2
  experts of Rewarded Soups, the one training of a conditioned policy).
- `plot_aggregate`: an across-task aggregate: the IQM with its 95% interval, the performance
  profiles with their bands, and the probability-of-improvement matrix.

The axes frame the reference front and the points inside the hypervolume's reference box; a point
beyond both (which adds no hypervolume) is drawn as a cross at the edge. Each algorithm keeps its
colour and marker in every figure (`algorithm_styles`); fronts with fewer points are drawn on top,
so a single point is never hidden under a longer front. Every figure is written twice, for print:
a PNG at `DPI` and a PDF (vector) beside it, both without metadata, so the same records give the
same bytes on one installation.
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from moabench.core.task import HV_REFERENCE, ObjectiveSpace  # noqa: E402
from moabench.evaluation.aggregates import Aggregate  # noqa: E402
from moabench.evaluation.metrics import nondominated_mask  # noqa: E402
from moabench.evaluation.stats import Interval  # noqa: E402

#: per algorithm: every complete front's final points (n, m) in raw units, their preferences
#: (n, m) and seeds (n,)
FrontPoints = tuple[np.ndarray, np.ndarray, np.ndarray]
#: per algorithm: its median seed's final points (n, m) in raw units, that seed, how many seeds
MedianFront = tuple[np.ndarray, int, int]
Style = tuple[str, str]  # (colour, marker)

MARKERS = "osD^v<>pP*"
REFERENCE_COLOUR = "0.55"
DPI = 300  # print resolution
#: font sizes in points, readable at the figures' print size (7 inches wide at most)
FONTS = {
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "legend.fontsize": 8, "legend.title_fontsize": 8,
    "figure.titlesize": 10, "pdf.fonttype": 42,
}  # fmt: skip


def _print_style(draw: Callable[..., Path]) -> Callable[..., Path]:
    """Draw under `FONTS` (matplotlib's global settings untouched)."""

    @functools.wraps(draw)
    def styled(*args, **kwargs) -> Path:
        with matplotlib.rc_context(FONTS):
            return draw(*args, **kwargs)

    return styled


def algorithm_styles(labels: Sequence[str]) -> dict[str, Style]:
    """A colour (tab10) and a marker for every algorithm label, by its position in sorted order."""
    colours = plt.get_cmap("tab10").colors
    return {
        label: (matplotlib.colors.to_hex(colours[i % 10]), MARKERS[i % len(MARKERS)])
        for i, label in enumerate(sorted(set(labels)))
    }


@_print_style
def plot_overlay(
    title: str,
    space: ObjectiveSpace,
    fronts: Mapping[str, MedianFront],
    reference: np.ndarray | None,
    reference_label: str,
    path: Path,
    styles: Mapping[str, Style],
) -> Path:
    """Every algorithm's median front on one set of axes, over the reference front."""
    m = _check_objectives(space)
    figure = plt.figure(figsize=(7, 4.6), layout="constrained")
    axes = _new_axes(figure, space, 1, 1, 1)
    axes.set_title(title)
    handles = _draw_reference(axes, space, reference, reference_label)
    points = {name: _front(space, front[0]) for name, front in fronts.items()}
    limits = _limits(space, reference, list(points.values()))
    for layer, name in enumerate(_drawing_order(points)):
        colour, marker = styles[name]
        if m == 2 and len(points[name]):
            staircase = np.clip(points[name], *np.asarray(limits).T)
            axes.step(*staircase.T, where="post", color=colour, linewidth=1.2, alpha=0.7,
                      zorder=2 + layer)  # fmt: skip
        size = 60 if len(points[name]) <= 2 else 36  # a lone point stands out
        _scatter(axes, space, points[name], limits, colour, marker, False, size, 2.5 + layer)
    for name in sorted(points):
        colour, marker = styles[name]
        _, seed, seeds = fronts[name]
        handles.append(
            Line2D([], [], color=colour, marker=marker, markerfacecolor="none",
                   linestyle="-" if m == 2 else "", label=f"{name} (seed {seed} of {seeds})")
        )  # fmt: skip
    handles.append(_beyond_handle())
    _set_limits(axes, limits)
    _label_axes(axes, space)
    figure.legend(
        handles=handles, loc="outside lower center", ncols=legend_columns(handles),
        alignment="left",
        title="each algorithm's median seed by hypervolume: its non-dominated points",
    )  # fmt: skip
    return _save(figure, path)


@_print_style
def plot_fronts(
    title: str,
    space: ObjectiveSpace,
    fronts: Mapping[str, FrontPoints],
    reference: np.ndarray | None,
    reference_label: str,
    path: Path,
    partial: Mapping[str, FrontPoints] | None = None,
) -> Path:
    """One panel per algorithm, all on the same axes: every seed's final points coloured by
    preference, filled where non-dominated within their seed's front, hollow where dominated;
    then one panel per algorithm with `partial` fronts, titled "partial, not ranked"."""
    m = _check_objectives(space)
    panels = [(name, fronts[name], name) for name in sorted(fronts)] + [
        (name, points, f"{name}: partial, not ranked")
        for name, points in sorted((partial or {}).items())
    ]
    side = 1.75 if m == 2 else 2.5  # inches per panel: 3-D axes need room for their labels
    columns = min(4 if m == 2 else 3, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    width = max(6.2, side * columns + 1.0)  # room for the title and the legend
    figure = plt.figure(figsize=(width, side * rows + 1.3), layout="constrained")
    figure.suptitle(title)
    limits = _limits(space, reference, [np.asarray(points[0]) for _, points, _ in panels])
    handles: list[Line2D] = []
    for index, (_, points, heading) in enumerate(panels or [("", None, "")]):
        axes = _new_axes(figure, space, rows, columns, index + 1)
        handles = _draw_reference(axes, space, reference, reference_label)
        if points is not None:
            _scatter_seeds(axes, space, *points, limits)
            colour = "0.35" if heading != panels[index][0] else "black"
            axes.set_title(textwrap.fill(heading, PANEL_TITLE_CHARACTERS), color=colour)
        _set_limits(axes, limits)
        row, column = divmod(index, columns)
        bottom = row == rows - 1 or index + columns >= len(panels)
        _label_axes(axes, space, x=bottom or m == 3, y=column == 0 or m == 3)
    handles += [
        Line2D([], [], color="0.2", marker="o", linestyle="", label="non-dominated in its seed's front"),
        Line2D([], [], color="0.2", marker="o", markerfacecolor="none", linestyle="",
               label="dominated in its seed's front"),
        _beyond_handle(),
    ]  # fmt: skip
    if m == 2:
        mappable = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, 1))
        figure.colorbar(
            mappable, ax=figure.axes, shrink=0.6, location="right",
            label=f"colour: preference weight on {space.names[0]}",
        )  # fmt: skip
    else:
        handles.append(
            Line2D([], [], color="none", label="colour: preference (w1, w2, w3) as (R, G, B)")
        )
    figure.legend(handles=handles, loc="outside lower center", ncols=2)
    return _save(figure, path)


@_print_style
def plot_compute(
    title: str,
    rows: Mapping[str, tuple[Interval, Interval]],
    path: Path,
    styles: Mapping[str, Style],
) -> Path:
    """Per algorithm: (hypervolume, gradient evaluations per front) -> one point with the
    hypervolume's interval, at its mean compute (log axis)."""
    figure = plt.figure(figsize=(7, 4.2), layout="constrained")
    axes = figure.add_subplot(1, 1, 1)
    axes.set_title(title)
    for name in sorted(rows):
        hypervolume, evaluations = rows[name]
        colour, marker = styles[name]
        low, high = hypervolume.low, hypervolume.high
        error = None if math.isnan(low) else [[hypervolume.mean - low], [high - hypervolume.mean]]
        axes.errorbar(
            max(evaluations.mean, 1.0), hypervolume.mean, yerr=error, color=colour,
            marker=marker, markerfacecolor="none", markersize=7, capsize=3, linestyle="",
            label=name,
        )  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel("gradient evaluations per front (every distinct training once)")
    axes.set_ylabel("hypervolume (normalised space)")
    axes.grid(True, which="major", linewidth=0.4, alpha=0.5)
    figure.legend(loc="outside right upper", title="mean over seeds, 95% interval")
    return _save(figure, path)


@_print_style
def plot_aggregate(aggregate: Aggregate, path: Path, styles: Mapping[str, Style]) -> Path:
    """The IQM of every algorithm with its interval, the performance profiles with their bands,
    and the matrix of P(row > column)."""
    names = aggregate.algorithms
    k = max(1, len(names))
    figure, (left, middle, right) = plt.subplots(
        1, 3, figsize=(10, 0.25 * k + 2.6), layout="constrained", width_ratios=[1, 1.25, 1.1]
    )
    figure.suptitle(f"Across tasks, {aggregate.group}: {', '.join(aggregate.tables)}")
    for position, name in enumerate(names):
        interval, (colour, marker) = aggregate.iqm[name], styles[name]
        y = k - 1 - position  # the best on top
        if not math.isnan(interval.low):
            left.plot([interval.low, interval.high], [y, y], color=colour, linewidth=6, alpha=0.45)
        left.plot([interval.mean], [y], color=colour, marker=marker, markersize=7)
    left.set_yticks(range(k), list(reversed(names)) or [""])
    left.set_ylim(-0.7, k - 0.3)
    left.set_xlabel("IQM of HV / reference HV\n(bar: 95% stratified bootstrap CI)")
    left.set_title("interquartile mean")
    left.grid(axis="x", alpha=0.3)

    for name in names:
        fraction, low, high = aggregate.profiles[name]
        colour, _ = styles[name]
        middle.step(aggregate.taus, fraction, where="post", color=colour, linewidth=1.3)
        middle.fill_between(
            aggregate.taus, low, high, step="post", color=colour, alpha=0.12, linewidth=0
        )
    middle.set_xlabel("τ: HV / reference HV")
    middle.set_ylabel("fraction of runs above τ")
    middle.set_title("performance profiles\n(colours as on the left; band: 95% CI)")
    middle.set_ylim(-0.02, 1.02)
    middle.grid(alpha=0.3)

    matrix = np.full((k, k), np.nan)
    for i, x in enumerate(names):
        for j, y in enumerate(names):
            if i != j:
                matrix[i, j] = aggregate.improvement[(x, y)].mean
    right.imshow(matrix, cmap="RdBu", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if i != j:
                right.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                           color="white" if abs(matrix[i, j] - 0.5) > 0.35 else "black")  # fmt: skip
    right.set_xticks(range(len(names)), names, rotation=45, ha="right")
    right.set_yticks(range(len(names)), names)
    right.set_title("P(row > column)")
    return _save(figure, path)


def _check_objectives(space: ObjectiveSpace) -> int:
    if space.n_objectives not in (2, 3):
        raise ValueError(f"front plots support 2 or 3 objectives, not {space.n_objectives}")
    return space.n_objectives


def _front(space: ObjectiveSpace, points: np.ndarray) -> np.ndarray:
    """The non-dominated points of one front, in order along the first normalised objective."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, space.n_objectives)
    front = np.unique(points[nondominated_mask(space.normalize(points))], axis=0)
    return front[np.argsort(space.normalize(front)[:, 0], kind="stable")]


def _limits(
    space: ObjectiveSpace, reference: np.ndarray | None, arrays: Sequence[np.ndarray]
) -> list[tuple[float, float]]:
    """Axis limits (5% margin) around the reference front and the points inside the
    hypervolume's reference box (all points when none is)."""
    m = space.n_objectives
    points = np.vstack(
        [np.asarray(a, dtype=np.float64).reshape(-1, m) for a in arrays] or [np.zeros((0, m))]
    )
    inside = points[np.all(space.normalize(points) <= HV_REFERENCE, axis=1)]
    framed = [inside] + ([] if reference is None else [np.asarray(reference).reshape(-1, m)])
    data = np.vstack(framed)
    if len(data) == 0:
        data = points if len(points) else np.zeros((1, m))
    low, high = data.min(axis=0), data.max(axis=0)
    margin = np.where(high > low, 0.05 * (high - low), 0.05)
    return [(float(a), float(b)) for a, b in zip(low - margin, high + margin)]


def _set_limits(axes, limits: list[tuple[float, float]]) -> None:
    axes.set_xlim(*limits[0])
    axes.set_ylim(*limits[1])
    if len(limits) == 3:
        axes.set_zlim(*limits[2])


def _new_axes(figure, space: ObjectiveSpace, *grid: int):
    if space.n_objectives == 3:
        axes = figure.add_subplot(*grid, projection="3d")
        axes.view_init(elev=25, azim=45)
        axes.set_box_aspect(None, zoom=0.8)  # room for the axis labels
        return axes
    return figure.add_subplot(*grid)


def _draw_reference(axes, space, reference: np.ndarray | None, label: str) -> list[Line2D]:
    """The reference front in grey; its legend entry."""
    if reference is None or len(reference) == 0:
        return []
    extra = {"depthshade": False} if space.n_objectives == 3 else {"zorder": 1}
    axes.scatter(*np.asarray(reference).T, s=5, color=REFERENCE_COLOUR, linewidths=0, **extra)
    return [
        Line2D([], [], color=REFERENCE_COLOUR, marker="o", markersize=4, linestyle="", label=label)
    ]


def _drawing_order(points: Mapping[str, np.ndarray]) -> list[str]:
    """Names by decreasing number of points (then name): drawn in this order, the fronts with
    fewest points end on top."""
    return sorted(points, key=lambda name: (-len(points[name]), name))


def _beyond_handle() -> Line2D:
    return Line2D(
        [], [], color="0.2", marker="x", linestyle="",
        label="beyond the HV reference point (at the edge)",
    )  # fmt: skip


def _scatter(
    axes, space, points, limits, colours, marker: str, filled: bool, size: float, zorder=3.0
) -> None:
    """`points` inside `limits` with `marker`; those beyond as crosses on the edge."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, space.n_objectives)
    if len(points) == 0:
        return
    low, high = np.asarray(limits).T
    beyond = np.any((points < low) | (points > high), axis=1)
    colours = matplotlib.colors.to_rgba_array(colours)
    colours = np.broadcast_to(colours, (len(points), 4)) if len(colours) == 1 else colours
    extra = {"depthshade": False} if space.n_objectives == 3 else {"zorder": zorder}
    for mask, symbol in ((~beyond, marker), (beyond, "x")):
        if not mask.any():
            continue
        if filled or symbol == "x":
            style = {"c": colours[mask]}
        else:
            style = {"facecolors": "none", "edgecolors": colours[mask]}
        axes.scatter(
            *np.clip(points[mask], low, high).T, s=size, marker=symbol, linewidths=1.2,
            **style, **extra,
        )  # fmt: skip


def _scatter_seeds(
    axes, space: ObjectiveSpace, points, preferences, seeds, limits: list[tuple[float, float]]
) -> None:
    points, preferences = np.asarray(points, np.float64), np.asarray(preferences, np.float64)
    if len(points) == 0:
        return
    m = space.n_objectives
    colours = plt.cm.viridis(preferences[:, 0]) if m == 2 else np.clip(preferences, 0, 1)
    front = np.zeros(len(points), dtype=bool)
    for seed in np.unique(seeds):
        mine = np.asarray(seeds) == seed
        front[mine] = nondominated_mask(space.normalize(points[mine]))
    for mask, filled in ((front, True), (~front, False)):
        if mask.any():
            _scatter(axes, space, points[mask], limits, colours[mask], "o", filled, size=14)


def _axis_labels(space: ObjectiveSpace) -> list[str]:
    return [f"{name} ({'max' if up else 'min'})" for name, up in zip(space.names, space.maximize)]


def _label_axes(axes, space: ObjectiveSpace, x: bool = True, y: bool = True) -> None:
    labels = _axis_labels(space)
    axes.set_xlabel(labels[0] if x else "")
    axes.set_ylabel(labels[1] if y else "")
    if space.n_objectives == 3:
        axes.set_zlabel(labels[2])
    for axis in (axes.xaxis, axes.yaxis, *([axes.zaxis] if space.n_objectives == 3 else [])):
        axis.set_major_locator(MaxNLocator(4 if space.n_objectives == 2 else 3))  # apart


#: A small multiple's title wraps beyond this many characters (a label with parameters).
PANEL_TITLE_CHARACTERS = 26
#: The longest legend label (characters) that three columns fit across a 7-inch figure.
LABEL_CHARACTERS_IN_THREE_COLUMNS = 38


def legend_columns(handles: list) -> int:
    """Three columns, two when a label (an algorithm with its parameters) is too long."""
    longest = max((len(h.get_label()) for h in handles), default=0)
    return 2 if longest > LABEL_CHARACTERS_IN_THREE_COLUMNS else 3


def _save(figure, path: Path) -> Path:
    """Write `path` (PNG at `DPI`) and the same figure as PDF beside it; return `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, metadata={"Software": None})
    figure.savefig(path.with_suffix(".pdf"), metadata={"Creator": None, "Producer": None,
                                                       "CreationDate": None})  # fmt: skip
    plt.close(figure)
    return path
