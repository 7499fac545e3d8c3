"""The leaderboard from hand-made records on made-up tasks (so the reference front is the union),
on a three-preference grid (`partitions=2`)."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from moabench.core.algorithm import GramRule, Paradigm, algorithms
from moabench.core.errors import ConfigError
from moabench.evaluation import fronts, load_results
from moabench.evaluation.frame import RECORD_COLUMNS
from moabench.evaluation.leaderboard import build_leaderboard, check_leaderboard
from moabench.evaluation.stats import (
    equivalence_test,
    hodges_lehmann,
    holm,
    improvement_interval,
    iqm_interval,
    paired_t_test,
    sign_flip_test,
    t_interval,
)
from moabench.evaluation.tables import standings
from moabench.runs.records import RunConfig, RunRecord, load_records, write_record

SPACE = {
    "names": ["f1", "f2"],
    "maximize": [False, False],
    "ideal": [0.0, 0.0],
    "nadir": [1.0, 1.0],
}
GRID = [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]  # simplex_lattice(2, 2)
PARTITIONS = 2


def record(algorithm, preference, seed, objectives, task="toy-task", task_params=None, reason=None):
    config = RunConfig(
        algorithm=algorithm,
        task=task,
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


def build(results, out, **kwargs):
    return build_leaderboard(results, out, partitions=PARTITIONS, **kwargs)


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "results"
    for seed in (0, 1, 2):
        jitter = 0.01 * seed
        write_front(folder, "ls", seed, [[0.0, 1.0], [0.6 + jitter, 0.6], [1.0, 0.0]])
        write_front(folder, "mgda", seed, [[0.5, 0.5 + jitter]] * 3)
    return folder


def row(table, algorithm):
    return next(r for r in table.rows if r.algorithm == algorithm)


def test_algorithms_are_ranked_by_hypervolume_with_t_intervals(results, tmp_path):
    result = build(results, tmp_path / "board")
    (table,) = result.tables
    assert table.reference.kind == "union" and table.grid == 3
    assert [r.algorithm for r in table.ranked] == ["ls", "mgda"]
    text = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "| 1 | ls |" in text and "| 2 | mgda |" in text
    # mgda's one point (0.5, 0.5 + j) has HV (1.1 - 0.5)(1.1 - 0.5 - j): 0.36, 0.354, 0.348
    hv = row(table, "mgda").summary["hypervolume"]
    expected = t_interval([0.36, 0.354, 0.348])
    assert (hv.mean, hv.low, hv.high) == pytest.approx((expected.mean, expected.low, expected.high))
    assert hv.n == 3
    assert hv.high - hv.mean == pytest.approx(4.302653 * 0.006 / math.sqrt(3), rel=1e-6)


def test_comparisons_with_the_leader_are_paired_by_seed_and_holm_adjusted(tmp_path):
    """One point (a, 0) per front has HV 1.1 (1.1 - a). Seeds move every algorithm together (as
    shared starting points do): `close` trails `leader` by a steady 0.011 in HV, far less than
    the spread over seeds, so unpaired intervals overlap while the paired tests separate them;
    `noisy` trails by as much on average but erratically; `twin` trails by 0.00077 on every
    seed: an exact difference (no spread), within the 1% equivalence margin."""
    results = tmp_path / "results"
    base = np.linspace(0.0, 0.5, 10)
    steady = np.array([0.01, 0.011, 0.009, 0.01, 0.0105, 0.0095, 0.01, 0.01, 0.0102, 0.0098])
    erratic = np.array([0.06, -0.04, 0.05, -0.03, 0.04, -0.02, 0.03, -0.035, 0.045, -0.025])
    shifts = {
        "leader": 0 * base,
        "close": steady,
        "noisy": 0.01 + erratic,
        "twin": 0.0007 + 0 * base,
    }
    for name, shift in shifts.items():
        for seed, a in enumerate(base + shift):
            write_front(results, name, seed, [[a, 0.0]] * 3)
    (table,) = build(results, tmp_path / "board", plots=False).tables
    hv = {name: 1.1 * (1.1 - (base + shift)) for name, shift in shifts.items()}
    assert [r.algorithm for r in table.ranked] == ["leader", "twin", "close", "noisy"]
    margin = 0.01 * table.reference.hypervolume
    tested = ("close", "noisy")  # twin's differences have no spread: exact, no p-value
    sign_flip = dict(zip(tested, holm([sign_flip_test(hv[n] - hv["leader"]) for n in tested])))
    t = dict(zip(tested, holm([paired_t_test(hv[n], hv["leader"]).p_value for n in tested])))
    for name in tested:
        comparison = row(table, name).comparison
        assert comparison.p_holm == pytest.approx(sign_flip[name])
        assert comparison.p_holm_t == pytest.approx(t[name])
        difference = hv[name] - hv["leader"]
        assert comparison.test.hodges_lehmann == pytest.approx(hodges_lehmann(difference))
        assert comparison.test.p_equivalence == pytest.approx(equivalence_test(difference, margin))
    close, noisy, twin = (row(table, n).comparison for n in ("close", "noisy", "twin"))
    assert row(table, "close").summary["hypervolume"].low < row(table, "leader").summary[
        "hypervolume"
    ].high
    # every one of close's 10 differences is negative: p = 2 / 2^10, times 2 by Holm
    assert close.p_holm == pytest.approx(2 * 2 / 1024) and close.separated
    assert not noisy.separated and not noisy.equivalent
    assert twin.test.exact and math.isnan(twin.p_holm) and twin.separated and twin.equivalent
    assert twin.difference.mean == pytest.approx(-0.00077)
    text = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "| exact | exact | = |" in text.split("| 2 | twin |")[1].split("\n")[0]
    assert "| ≈ |" in text.split("| 4 | noisy |")[1].split("\n")[0]


def test_a_partial_front_is_never_ranked_and_says_what_it_misses(results, tmp_path):
    write_record(record("raco", [0.5, 0.5], 0, [0.1, 0.1]), results)  # a one-off run
    write_record(record("ls", [0.0, 1.0], 3, [0.0, 0.0]), results)  # an unfinished seed
    write_record(record("ls", [0.5, 0.5], 3, [0.0, 0.0]), results)
    write_record(record("ls", [0.3, 0.7], 0, [0.0, 0.0]), results)  # off the grid
    result = build(results, tmp_path / "board")
    (table,) = result.tables
    raco, ls = row(table, "raco"), row(table, "ls")
    assert raco.rank is None and raco.seeds == 0 and raco.partial == 1
    assert [r.algorithm for r in table.ranked] == ["ls", "mgda"]  # raco's (0.1, 0.1) would lead
    assert ls.seeds == 3 and ls.partial == 1
    # seeds 0-2 only, without seed 0's off-grid point (0, 0), whose HV would be 1.1^2
    assert ls.summary["hypervolume"].n == 3 and ls.summary["hypervolume"].high < 1.0
    missing = {(f.algorithm, f.seed): (f.missing, f.off_grid) for f in table.partial}
    assert missing == {("raco", 0): (2, 0), ("ls", 3): (1, 0)}
    (aggregate,) = result.aggregates
    assert aggregate.left_out == {"raco": ["toy-task"]} and "raco" not in aggregate.algorithms
    text = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "| - | raco | no complete front |" in text
    assert "| raco | 0 | 2 | 0 |" in text and "| ls | 3 | 1 | 0 |" in text
    assert "| 3 (+1 partial) |" in text
    per_front = pd.read_csv(tmp_path / "board" / "fronts.csv")
    ls0 = per_front[(per_front.algorithm == "ls") & (per_front.seed == 0)].iloc[0]
    assert ls0.complete and ls0.off_grid == 1


def test_a_failed_run_leaves_its_front_complete_and_is_listed_with_its_reason(results, tmp_path):
    write_record(record("raco", [0.5, 0.5], 0, None, reason="diverged: step 3: nan"), results)
    write_record(record("raco", [0.0, 1.0], 0, [0.1, 0.9]), results)
    write_record(record("raco", [1.0, 0.0], 0, [0.9, 0.1]), results)
    write_front(results, "raco", 1, [[0.1, 0.9], [0.4, 0.4], [0.9, 0.1]])
    (table,) = build(results, tmp_path / "board").tables
    raco = row(table, "raco")
    assert raco.seeds == 2 and raco.rank is not None and len(raco.failed) == 1
    text = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "| 1/6 |" in text and "diverged: step 3: nan" in text
    page = (tmp_path / "board" / "site" / "index.html").read_text()
    assert "failed runs (1)" in page and "diverged: step 3: nan" in page


def test_same_records_give_byte_identical_files(results, tmp_path):
    build(results, tmp_path / "a")
    build(results, tmp_path / "b")
    names = ["LEADERBOARD.md", "site/index.html", "standings.csv", "fronts.csv", "aggregates.csv"]
    names += ["improvement.csv", "profiles.csv", "plots/toy-task.png", "plots/toy-task_overlay.png"]
    names += ["plots/aggregate-analytic.png"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_an_empty_results_folder_is_an_error_and_writes_nothing(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "ffffffffffffffff.json").write_text("{broken")
    for make in (build, check_leaderboard):
        with pytest.raises(ConfigError, match="no run records in .*results .1 files left out"):
            make(tmp_path / "results", tmp_path / "board")
    assert not (tmp_path / "board").exists()


def test_corrupt_files_are_skipped_and_named(results, tmp_path):
    bad = results / "ffffffffffffffff.json"
    bad.write_text("{broken")
    result = build(results, tmp_path / "board")
    assert [path for path, _ in result.skipped] == [bad]
    assert result.tables[0].rows[0].seeds == 3
    with pytest.warns(UserWarning, match="ffffffffffffffff.json"):
        load_results(results)


def test_task_parameters_such_as_scale_are_kept_apart(tmp_path):
    results = tmp_path / "results"
    write_front(
        results, "ls", 0, [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]], task_params={"scale": "tiny"}
    )
    write_front(
        results, "ls", 0, [[0.2, 1.0], [0.5, 0.6], [1.0, 0.2]], task_params={"scale": "paper"}
    )
    result = build(results, tmp_path / "board")
    assert [table.label for table in result.tables] == [
        "toy-task scale=paper",
        "toy-task scale=tiny",
    ]
    assert [a.group for a in result.aggregates] == ["analytic scale=paper", "analytic scale=tiny"]


def test_an_algorithm_that_cannot_run_on_the_task_shows_as_n_a(results, tmp_path, monkeypatch):
    class OnlineOnly(GramRule):
        """Test-only rule for online RL only."""

        paradigms = frozenset({Paradigm.ONLINE})

    OnlineOnly.name = "online-only"
    monkeypatch.setitem(algorithms._entries, "online-only", OnlineOnly)
    build(results, tmp_path / "board")
    text = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "| - | online-only | n/a |" in text


def test_results_as_data_and_the_statistics_redone_from_them(results, tmp_path):
    records = load_results(results)
    assert list(records.columns) == list(RECORD_COLUMNS) and len(records) == 18
    first = records.iloc[0]
    assert first.table == "toy-task" and first.algorithm == "ls" and first.status == "ok"
    assert first.objectives == (0.0, 1.0) and first.preference == (0.0, 1.0)
    per_front = fronts(records, partitions=PARTITIONS)
    assert len(per_front) == 6 and per_front.complete.all()
    union = per_front.reference_hypervolume.iloc[0]
    assert per_front.score.tolist() == pytest.approx((per_front.hypervolume / union).tolist())
    # what the table shows is what the frame gives
    board = standings(records, partitions=PARTITIONS)
    ls = per_front[per_front.algorithm == "ls"].sort_values("seed")
    assert row(board.tables[0], "ls").summary["hypervolume"] == t_interval(ls.hypervolume)
    build(results, tmp_path / "board", plots=False)
    table = pd.read_csv(tmp_path / "board" / "standings.csv")
    mgda = table[table.algorithm == "mgda"].iloc[0]
    test = paired_t_test(
        per_front[per_front.algorithm == "mgda"].sort_values("seed").hypervolume, ls.hypervolume
    )
    assert mgda.p_holm_t == pytest.approx(test.p_value, rel=1e-6)  # one comparison: unadjusted
    assert mgda.vs_leader == pytest.approx(test.difference.mean, rel=1e-6)


def test_aggregates_across_tasks_from_the_fronts(results, tmp_path):
    for seed in (0, 1, 2):  # a second analytic task; raco runs only there
        write_front(
            results, "ls", seed, [[0.0, 0.5], [0.3, 0.3 + 0.1 * seed], [0.5, 0.0]], task="other"
        )
        write_front(results, "mgda", seed, [[0.2, 0.2 + 0.05 * seed]] * 3, task="other")
        write_front(results, "raco", seed, [[0.1, 0.1]] * 3, task="other")
    result = build(results, tmp_path / "board")
    (aggregate,) = result.aggregates
    assert aggregate.group == "analytic" and aggregate.tables == ["other", "toy-task"]
    assert aggregate.left_out == {"raco": ["toy-task"]}
    per_front = pd.read_csv(tmp_path / "board" / "fronts.csv")

    def strata(name):
        mine = per_front[per_front.algorithm == name].sort_values(["table", "seed"])
        return [group.score.to_numpy() for _, group in mine.groupby("table")]

    ls, expected_ls = aggregate.iqm["ls"], iqm_interval(strata("ls"))  # from the CSV's 8 digits
    assert (ls.mean, ls.low, ls.high) == pytest.approx(
        (expected_ls.mean, expected_ls.low, expected_ls.high), rel=1e-6
    )
    expected = improvement_interval(strata("ls"), strata("mgda"))
    assert aggregate.improvement[("ls", "mgda")].mean == pytest.approx(expected.mean)
    assert aggregate.improvement[("mgda", "ls")].mean == pytest.approx(1 - expected.mean)
    text = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "## Across tasks: analytic" in text and "- raco: none on toy-task" in text
    assert (tmp_path / "board" / "plots" / "aggregate-analytic.png").exists()


def test_check_reports_a_stale_leaderboard(results, tmp_path):
    board = tmp_path / "board"
    build(results, board)
    assert check_leaderboard(results, board, partitions=PARTITIONS).differences == []
    (board / "LEADERBOARD.md").write_text("# edited by hand\n")
    csv = board / "standings.csv"
    csv.write_text(csv.read_text().replace("mgda", "mgdb"))
    differences = check_leaderboard(results, board, partitions=PARTITIONS).differences
    assert any(line.startswith("-# edited by hand") for line in differences)
    assert any(line.startswith("-toy-task") and "mgdb" in line for line in differences)


def test_check_reports_a_stale_page_and_plot_files(results, tmp_path):
    board = tmp_path / "board"
    build(results, board)
    page = board / "site" / "index.html"
    page.write_text(page.read_text().replace("<h1>", "<h1>old "))
    (board / "plots" / "retired-task.png").write_bytes(b"png")  # as an earlier version drew it
    manifest = board / ".moabench-outputs.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) + ["plots/retired-task.png"]))
    (board / "plots" / "toy-task_overlay.png").unlink()
    differences = check_leaderboard(results, board, partitions=PARTITIONS).differences
    assert any(line.startswith("-<h1>old ") for line in differences), differences
    assert f"stale plot (nothing draws it): {board / 'plots/retired-task.png'}" in differences
    assert f"missing plot: {board / 'plots/toy-task_overlay.png'}" in differences
    build(results, board)  # regenerating removes the retired plot, redraws the other
    assert check_leaderboard(results, board, partitions=PARTITIONS).differences == []


def test_cost_columns_by_hand(tmp_path):
    from moabench.runs.sweep import SweepConfig, plan_sweep, run_sweep

    plan = plan_sweep(
        SweepConfig(algorithms=["ls", "mgda"], tasks=["zdt1"], seeds=[0], partitions=2)
    )
    run_sweep(plan.configs, tmp_path)
    records = load_records(tmp_path).records
    board = standings(load_results(tmp_path), lambda task, params: None, partitions=2)
    for table_row in board.tables[0].ranked:
        ours = [r for r in records if r.config.algorithm == table_row.algorithm]
        evaluations = sum(
            r.cost.gradient_evaluations for r in ours
        )  # 3 runs x 100 steps x (1 or 2)
        assert evaluations == 300 * (1 if table_row.algorithm == "ls" else 2)
        assert table_row.summary["gradient_evaluations"].mean == evaluations
        hv = table_row.summary["hypervolume"].mean
        assert table_row.summary["hypervolume_per_kilo_evaluation"].mean == pytest.approx(
            1000 * hv / evaluations
        )
        assert table_row.summary["wall_time"].mean == pytest.approx(
            sum(r.cost.wall_time_s for r in ours)
        )


def test_a_table_whose_seeds_add_no_variance_is_flagged_and_gives_no_p_value(tmp_path):
    """Every seed gives the same fronts: the differences are exact, so the page says so and
    shows no p-value; the utility ranking and the flags appear beside the HV ranking."""
    results = tmp_path / "results"
    for seed in (0, 1, 2):
        # ls's points follow the preference: w = (0, 1) weighs f2, and gets f2 = 0
        write_front(results, "ls", seed, [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
        write_front(results, "mgda", seed, [[0.5, 0.5]] * 3)
        # the same points against the preference: the same front and HV, the worst utility
        write_front(results, "upgrad", seed, [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    (table,) = build(results, tmp_path / "board", plots=False).tables
    assert table.deterministic and row(table, "mgda").comparison.test.exact
    text = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "**Flags.** Deterministic: seeds add no variance" in text
    assert "| exact | exact |" in text.split("| 3 | mgda |")[1].split("\n")[0]
    # U_ws = 1 - w·f at each point's own w: ls 1, 0.5, 1; mgda 0.5 everywhere; upgrad 0, 0.5, 0
    utility = table.rankings["weighted_sum_utility"]
    assert utility.order == ["ls", "mgda", "upgrad"]
    assert utility.estimate["ls"].mean == pytest.approx(1 - 0.5 / 3)
    assert utility.estimate["mgda"].mean == pytest.approx(0.5)
    assert utility.estimate["upgrad"].mean == pytest.approx(0.5 / 3)
    assert row(table, "upgrad").summary["hypervolume"] == row(table, "ls").summary["hypervolume"]
    assert "By utility. Which algorithm gives a user the best model" in text
