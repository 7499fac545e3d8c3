"""The leaderboard from hand-made records on a made-up task (so the reference front is the union)."""

import numpy as np
import pytest

from moabench.core.algorithm import GramRule, Paradigm, algorithms
from moabench.evaluation.leaderboard import build_leaderboard, check_leaderboard
from moabench.evaluation.tables import mean_interval
from moabench.runs.records import RunConfig, RunRecord, load_records, write_record

SPACE = {
    "names": ["f1", "f2"],
    "maximize": [False, False],
    "ideal": [0.0, 0.0],
    "nadir": [1.0, 1.0],
}
GRID = [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]


def record(algorithm, preference, seed, objectives, task_params=None, reason=None):
    config = RunConfig(
        algorithm=algorithm,
        task="toy-task",
        task_params=task_params or {},
        preference=preference,
        seed=seed,
    )
    return RunRecord(
        key=config.key(),
        config=config,
        paradigm="analytic",
        status="failed" if reason else "ok",
        reason=reason,
        objectives=None if reason else objectives,
        objective_space=SPACE,
    )


def write_front(results, algorithm, seed, points, **kwargs):
    for preference, point in zip(GRID, points):
        write_record(record(algorithm, preference, seed, point, **kwargs), results)


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "results"
    for seed in (0, 1, 2):
        jitter = 0.01 * seed
        write_front(folder, "ls", seed, [[0.0, 1.0], [0.6 + jitter, 0.6], [1.0, 0.0]])
        write_front(folder, "mgda", seed, [[0.5, 0.5 + jitter]] * 3)
    return folder


def test_algorithms_are_ranked_by_hypervolume_with_intervals(results, tmp_path):
    result = build_leaderboard(results, tmp_path / "board")
    (table,) = result.tables
    assert table.reference == "union"
    ranked = [row.algorithm for row in table.rows if row.supported]
    assert ranked == ["ls", "mgda"]
    text = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "| 1 | ls |" in text and "| 2 | mgda |" in text
    hv = table.rows[0].summary["hypervolume"]
    assert hv.low <= hv.mean <= hv.high and hv.n == 3


def test_same_records_give_byte_identical_files(results, tmp_path):
    build_leaderboard(results, tmp_path / "a")
    build_leaderboard(results, tmp_path / "b")
    for name in ("LEADERBOARD.md", "plots/toy-task.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_corrupt_files_are_skipped_and_named(results, tmp_path):
    bad = results / "ffffffffffffffff.json"
    bad.write_text("{broken")
    result = build_leaderboard(results, tmp_path / "board")
    assert [path for path, _ in result.skipped] == [bad]
    assert result.tables[0].rows[0].seeds == 3


def test_failed_runs_are_counted_and_listed_with_their_reason(results, tmp_path):
    write_record(record("raco", [0.5, 0.5], 0, None, reason="diverged: step 3: nan"), results)
    write_front(results, "raco", 1, [[0.1, 0.9], [0.4, 0.4], [0.9, 0.1]])
    build_leaderboard(results, tmp_path / "board")
    text = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "| 1/4 |" in text
    assert "diverged: step 3: nan" in text


def test_task_parameters_such_as_scale_are_kept_apart(tmp_path):
    results = tmp_path / "results"
    write_front(
        results, "ls", 0, [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]], task_params={"scale": "tiny"}
    )
    write_front(
        results, "ls", 0, [[0.2, 1.0], [0.5, 0.6], [1.0, 0.2]], task_params={"scale": "paper"}
    )
    labels = [table.label for table in build_leaderboard(results, tmp_path / "board").tables]
    assert labels == ["toy-task scale=paper", "toy-task scale=tiny"]


def test_an_algorithm_that_cannot_run_on_the_task_shows_as_n_a(results, tmp_path, monkeypatch):
    class OnlineOnly(GramRule):
        """Test-only rule for online RL only."""

        paradigms = frozenset({Paradigm.ONLINE})

    OnlineOnly.name = "online-only"
    monkeypatch.setitem(algorithms._entries, "online-only", OnlineOnly)
    build_leaderboard(results, tmp_path / "board")
    text = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "| - | online-only | n/a |" in text


def test_mean_intervals():
    single = mean_interval([0.5])
    assert str(single) == "0.5 (n=1)"
    flat = mean_interval([0.3, 0.3, 0.3])
    assert (flat.low, flat.high) == (0.3, 0.3)
    spread = mean_interval([0.1, 0.2, 0.6])
    assert spread.mean == pytest.approx(0.3)
    assert spread.low <= spread.mean <= spread.high and spread.low < spread.high
    assert spread == mean_interval([0.1, 0.2, 0.6])  # fixed bootstrap seed
    assert np.isnan(mean_interval([]).mean)


def test_check_reports_a_stale_leaderboard(results, tmp_path):
    board = tmp_path / "board"
    build_leaderboard(results, board)
    assert check_leaderboard(results, board) == []
    (board / "LEADERBOARD.md").write_text("# edited by hand\n")
    differences = check_leaderboard(results, board)
    assert any(line.startswith("-# edited by hand") for line in differences)


def test_check_reports_a_stale_page_and_plot_files(results, tmp_path):
    board = tmp_path / "board"
    build_leaderboard(results, board)
    page = board / "site" / "index.html"
    page.write_text(page.read_text().replace("<h1>", "<h1>old "))
    (board / "plots" / "retired-task.png").write_bytes(b"png")
    (board / "plots" / "toy-task.png").unlink()
    differences = check_leaderboard(results, board)
    assert any(line.startswith("-<h1>old ") for line in differences), differences
    assert f"stale plot (no table draws it): {board / 'plots/retired-task.png'}" in differences
    assert f"missing plot: {board / 'plots/toy-task.png'}" in differences
    build_leaderboard(results, board)  # regenerating removes the retired plot, redraws the other
    assert check_leaderboard(results, board) == []


def test_cost_columns_by_hand(tmp_path):
    from moabench.evaluation.tables import task_table
    from moabench.runs.sweep import SweepConfig, plan_sweep, run_sweep

    plan = plan_sweep(
        SweepConfig(algorithms=["ls", "mgda"], tasks=["zdt1"], seeds=[0], partitions=2)
    )
    run_sweep(plan.configs, tmp_path)
    records = load_records(tmp_path).records
    table, _ = task_table("zdt1", records, lambda task, params: None, "plot.png")
    for row in table.rows:
        if not row.supported:
            continue
        ours = [r for r in records if r.config.algorithm == row.algorithm]
        evaluations = sum(
            r.cost.gradient_evaluations for r in ours
        )  # 3 runs x 100 steps x (1 or 2)
        assert evaluations == 300 * (1 if row.algorithm == "ls" else 2)
        assert row.summary["gradient_evaluations"].mean == evaluations
        hv = row.summary["hypervolume"].mean
        assert row.summary["hypervolume_per_kilo_evaluation"].mean == pytest.approx(
            1000 * hv / evaluations
        )
        assert row.summary["wall_time"].mean == pytest.approx(sum(r.cost.wall_time_s for r in ours))
