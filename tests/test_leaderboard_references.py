"""Pinned reference sets: frozen once, they keep a table's scores still when an algorithm is
added (made-up tasks, so the reference is not an exact front)."""

import datetime
import json

import pandas as pd
import pytest
from test_leaderboard import PARTITIONS, build, write_front
from typer.testing import CliRunner

from moabench.cli import app
from moabench.core.errors import ConfigError
from moabench.evaluation.frame import read_results
from moabench.evaluation.leaderboard import check_leaderboard
from moabench.evaluation.references import freeze, read_references


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "results"
    for seed in (0, 1):
        write_front(folder, "ls", seed, [[0.0, 1.0], [0.6, 0.6], [1.0, 0.0]])
        write_front(folder, "mgda", seed, [[0.5, 0.5]] * 3)
    return folder


def scores(board, algorithm):
    standings = pd.read_csv(board / "standings.csv").set_index("algorithm")
    return standings.loc[algorithm, ["hypervolume", "score", "igd_plus"]].to_numpy()


def test_adding_an_algorithm_moves_no_other_score_once_the_reference_is_pinned(results, tmp_path):
    board = tmp_path / "board"
    build(results, board, plots=False, freeze_references=True)
    before = {name: scores(board, name) for name in ("ls", "mgda")}
    # the union of (0, 1), (0.6, 0.6), (1, 0) and (0.5, 0.5) keeps (0, 1), (0.5, 0.5), (1, 0):
    # HV up to 1.1 per objective = 0.5 * 0.1 + 0.5 * 0.6 + 0.1 * 1.1 = 0.46; mgda's 0.6 * 0.6
    pinned = json.loads((board / "references.json").read_text())["tables"]["toy-task"]
    assert pinned["points"] == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    assert pinned["records"] == 12 and pinned["algorithms"] == ["ls", "mgda"]
    assert before["mgda"][1] == pytest.approx(0.36 / 0.46)
    for seed in (0, 1):  # a better algorithm: its middle point dominates every other one
        write_front(results, "upgrad", seed, [[0.0, 1.0], [0.3, 0.3], [1.0, 0.0]])
    build(results, board, plots=False)
    for name in ("ls", "mgda"):
        assert scores(board, name) == pytest.approx(before[name])
    assert scores(board, "upgrad")[1] > 1  # beyond the pinned set: shown, not absorbed
    text = (board / "LEADERBOARD.md").read_text()
    assert "Reference front: the pinned reference set, 3 points, frozen on" in text
    assert "from 12 records of 2 algorithms (ls, mgda; seeds 0-1" in text
    # without the pinned set the union takes upgrad's point in, and every other score drops
    (board / "references.json").unlink()
    build(results, board, plots=False)
    assert scores(board, "mgda")[1] < before["mgda"][1]


def test_freeze_records_where_the_set_came_from_and_skips_exact_fronts(results):
    records, _ = read_results(results)
    data = freeze(records, partitions=PARTITIONS, day=datetime.date(2026, 1, 2))
    entry = data["tables"]["toy-task"]
    assert entry["frozen"] == "2026-01-02" and entry["seeds"] == [0, 1]
    assert entry["objectives"] == ["f1", "f2"] and len(entry["keys_sha256"]) == 64
    exact = freeze(records, lambda task, params: [[0.0, 0.0]], partitions=PARTITIONS)
    assert exact["tables"] == {}  # a table with an exact front needs no pinned set


def test_the_check_uses_the_committed_pinned_set(results, tmp_path):
    board = tmp_path / "board"
    build(results, board, plots=True, freeze_references=True)
    for seed in (0, 1):
        write_front(results, "upgrad", seed, [[0.0, 1.0], [0.3, 0.3], [1.0, 0.0]])
    build(results, board, plots=True)
    assert check_leaderboard(results, board, partitions=PARTITIONS).differences == []


def test_a_damaged_or_mismatched_pinned_file_is_a_clear_error(results, tmp_path):
    path = tmp_path / "references.json"
    path.write_text('{"tables": {"toy-task": {"points": "nope"}}}')
    with pytest.raises(ConfigError, match="not a pinned reference file"):
        read_references(path)
    assert read_references(tmp_path / "absent.json") == {}
    board = tmp_path / "board"
    build(results, board, plots=False, freeze_references=True)
    data = json.loads((board / "references.json").read_text())
    data["tables"]["toy-task"]["points"] = [[0.0, 1.0, 2.0]]
    data["tables"]["toy-task"]["objectives"] = ["a", "b", "c"]
    (board / "references.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="refreeze it"):
        build(results, board, plots=False)


def test_the_command_freezes_and_refuses_to_check_at_once(results, tmp_path):
    board = tmp_path / "board"
    runner = CliRunner()
    args = ["leaderboard", "--results-dir", str(results), "--out", str(board)]
    args += ["--partitions", str(PARTITIONS)]
    both = runner.invoke(app, [*args, "--check", "--freeze-references"])
    assert both.exit_code != 0 and "give one of them" in both.output
    frozen = runner.invoke(app, [*args, "--freeze-references"])
    assert frozen.exit_code == 0, frozen.output
    assert (board / "references.json").exists()
    assert runner.invoke(app, [*args, "--check"]).exit_code == 0
