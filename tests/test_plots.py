import matplotlib
import numpy as np
import pandas as pd
import pytest

from moabench.core.task import ObjectiveSpace
from moabench.evaluation.aggregates import aggregate
from moabench.evaluation.plots import (
    _limits,
    algorithm_styles,
    plot_aggregate,
    plot_fronts,
    plot_overlay,
)

TWO = ObjectiveSpace(("f1", "f2"), (False, False), (0.0, 0.0), (1.0, 1.0))
THREE = ObjectiveSpace(("a", "b", "c"), (True, True, True), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))


def fronts(m: int, shift: float = 0.0):
    rng = np.random.default_rng(0)
    points = rng.uniform(size=(6, m)) + shift
    preferences = rng.dirichlet(np.ones(m), size=6)
    seeds = np.array([0, 0, 0, 1, 1, 1])
    return {"ls": (points, preferences, seeds), "raco": (points[::-1], preferences, seeds)}


def medians(m: int, shift: float = 0.0):
    return {name: (points[:3], 0, 2) for name, (points, _, _) in fronts(m, shift).items()}


STYLES = algorithm_styles(["ls", "raco"])


@pytest.mark.parametrize(("space", "m"), [(TWO, 2), (THREE, 3)])
def test_plots_are_pngs_and_byte_identical_for_the_same_input(tmp_path, space, m):
    front = np.eye(m)

    def draw(name, shift=0.0):
        small = plot_fronts("t", space, fronts(m, shift), front, "ref", tmp_path / f"{name}.png")
        overlay = plot_overlay(
            "t", space, medians(m, shift), front, "ref", tmp_path / f"{name}-o.png", STYLES
        )
        return small.read_bytes(), overlay.read_bytes()

    a, b, moved = draw("a"), draw("b"), draw("c", 0.3)
    assert a[0].startswith(b"\x89PNG") and a[1].startswith(b"\x89PNG")
    assert a == b and a[0] != moved[0] and a[1] != moved[1]


def test_an_empty_mapping_draws_only_the_front(tmp_path):
    path = plot_fronts(
        "empty", TWO, {}, np.array([[0.0, 1.0], [1.0, 0.0]]), "ref", tmp_path / "e.png"
    )
    assert path.read_bytes().startswith(b"\x89PNG")


def test_four_objectives_are_refused_clearly(tmp_path):
    space = ObjectiveSpace(tuple("abcd"), (False,) * 4, (0.0,) * 4, (1.0,) * 4)
    with pytest.raises(ValueError, match="2 or 3 objectives, not 4"):
        plot_fronts("t", space, {}, None, "ref", tmp_path / "x.png")


def test_axes_frame_the_front_not_points_beyond_the_hypervolume_box():
    """A point at f2 = 5 (normalised 5 > 1.1) adds no hypervolume: the axes frame the reference
    front and the points inside the box (5% margin), and the far point is drawn at the edge."""
    reference = np.array([[0.0, 1.0], [1.0, 0.0]])
    points = np.array([[0.5, 0.6], [0.0, 5.0]])
    (x_low, x_high), (y_low, y_high) = _limits(TWO, reference, [points])
    assert (x_low, x_high) == pytest.approx((-0.05, 1.05))
    assert (y_low, y_high) == pytest.approx((-0.05, 1.05))


def test_every_algorithm_keeps_its_colour_and_marker():
    styles = algorithm_styles(["raco", "ls", "mgda", "ls"])
    assert list(styles) == ["ls", "mgda", "raco"]
    assert len({colour for colour, _ in styles.values()}) == 3
    assert len({marker for _, marker in styles.values()}) == 3


def test_the_aggregate_figure(tmp_path):
    rows = [
        {"table": t, "algorithm": a, "seed": s, "complete": True, "score": score + 0.01 * s}
        for t in ("t1", "t2")
        for a, score in (("ls", 0.8), ("raco", 0.7))
        for s in range(3)
    ]
    summary = aggregate("analytic", ["t1", "t2"], pd.DataFrame(rows))
    path = plot_aggregate(summary, tmp_path / "a.png", STYLES)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert summary.improvement[("ls", "raco")].mean == 1.0


def drawn(monkeypatch) -> list:
    """The figures the plot functions save, kept for inspection."""
    from moabench.evaluation import plots

    figures, save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda figure, path: (figures.append(figure), save(figure, path))[1])  # fmt: skip
    return figures


@pytest.mark.parametrize(("space", "m"), [(TWO, 2), (THREE, 3)])
def test_figures_are_for_print_a_png_at_300_dpi_and_a_pdf_with_readable_text(
    tmp_path, monkeypatch, space, m
):
    from PIL import Image

    figures = drawn(monkeypatch)
    paths = [
        plot_overlay("t", space, medians(m), np.eye(m), "ref", tmp_path / "o.png", STYLES),
        plot_fronts("t", space, fronts(m), np.eye(m), "ref", tmp_path / "f.png"),
    ]
    for path in paths:
        with Image.open(path) as image:
            assert image.info["dpi"][0] == pytest.approx(300, abs=1) and image.width >= 1800
        assert path.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
    for figure in figures:
        sizes = [
            text.get_fontsize() for text in figure.findobj(matplotlib.text.Text) if text.get_text()
        ]
        assert min(sizes) >= 8, sizes  # 8 pt at the printed size: ticks and legends included


def test_the_overlay_legend_leaves_the_axes_most_of_the_width(tmp_path, monkeypatch):
    figures = drawn(monkeypatch)
    many = {f"algorithm-{i}": front for i, front in enumerate(list(medians(2).values()) * 5)}
    styles = algorithm_styles(list(many))
    plot_overlay("t", TWO, many, np.eye(2), "reference front (exact)", tmp_path / "o.png", styles)
    (figure,) = figures
    assert figure.axes[0].get_position().width >= 0.8


def test_a_lone_point_is_drawn_over_a_longer_front(tmp_path, monkeypatch):
    """An algorithm that reaches one point, where another's front passes, stays visible: fronts
    with fewer points are drawn on top."""
    figures = drawn(monkeypatch)
    line = np.column_stack([np.linspace(0, 1, 10), np.linspace(1, 0, 10)])
    fronts_ = {"ls": (line, 0, 1), "raco": (line[4:5], 0, 1)}
    plot_overlay("t", TWO, fronts_, None, "ref", tmp_path / "o.png", STYLES)
    (figure,) = figures
    order = {}
    for collection in figure.axes[0].collections:
        colour = matplotlib.colors.to_hex(collection.get_edgecolor()[0])
        name = next(n for n, (c, _) in STYLES.items() if c == colour)
        order[name] = collection.get_zorder()
    assert order["raco"] > order["ls"]


def test_a_long_label_takes_two_legend_columns():
    """An algorithm with its parameters ("dynamic-weighting hypervolume_guided=True (seed 1 of
    5)") overflowed the overlay's three columns of a 7-inch figure."""
    from matplotlib.lines import Line2D

    from moabench.evaluation.plots import legend_columns

    short = [Line2D([], [], label="raco (seed 2 of 5)"), Line2D([], [], label="ls (seed 0 of 5)")]
    assert legend_columns(short) == 3
    long = short + [Line2D([], [], label="dynamic-weighting hypervolume_guided=True (seed 1 of 5)")]
    assert legend_columns(long) == 2
