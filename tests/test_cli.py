"""End-to-end CLI paths: list, run, sweep, leaderboard and the bad inputs."""

import json

import pytest

from moabench.cli import parse_seeds
from moabench.runs.records import load_records


def test_list_shows_paradigms_and_hyperparameters(cli):
    result = cli("list", "algorithms")
    assert result.exit_code == 0
    for text in ("gapo", "raco", "dynamic-weighting", "upgrad", "analytic", "c=0.4"):
        assert text in result.stdout
    tasks = cli("list", "tasks")
    assert tasks.exit_code == 0 and "zdt1" in tasks.stdout and "dtlz2" in tasks.stdout


def test_run_writes_a_complete_record(cli, tmp_path):
    result = cli("run", "--algo", "gapo", "--task", "zdt1", "--preference", "0.3,0.7",
                 "--param", "p=2", "--results-dir", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    (record,) = load_records(tmp_path).records
    assert record.status == "ok" and len(record.objectives) == 2
    assert record.config.algorithm_params == {"p": 2, "variant": "main"}
    assert record.config.task_params["steps"] > 0
    assert record.objective_space["hv_reference"] == 1.1
    assert record.cost.gradient_evaluations == 2 * record.cost.steps
    assert record.provenance["packages"]["moabench"]


def test_an_online_parameter_reaches_an_algorithm_that_trains_online_by_default(cli, tmp_path):
    """PAMA trains online on safety without `paradigm=online`; its online parameters apply then,
    with or without --preference (the uniform default must not be resolved under another paradigm)."""
    result = cli("run", "--algo", "pama", "--task", "safety", "--task-param", "steps=2",
                 "--task-param", "advantage=rloo", "--results-dir", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    (record,) = load_records(tmp_path).records
    assert record.paradigm == "online" and record.config.task_params["advantage"] == "rloo"
    assert record.config.preference == [0.5, 0.5]


def test_same_config_and_seed_give_the_same_numbers(cli, tmp_path):
    for directory in ("a", "b"):
        cli(
            "run",
            "--algo",
            "raco",
            "--task",
            "cagrad-toy",
            "--seed",
            "3",
            "--results-dir",
            str(tmp_path / directory),
        )
    (a,), (b,) = load_records(tmp_path / "a").records, load_records(tmp_path / "b").records
    assert a.objectives == b.objectives and a.trajectory == b.trajectory


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "--algo", "gapoo", "--task", "zdt1"],
            "unknown algorithm 'gapoo'. Did you mean gapo",
        ),
        (["run", "--algo", "gapo", "--task", "zdt9"], "unknown task 'zdt9'. Did you mean"),
        (
            ["run", "--algo", "gapo", "--task", "zdt1", "--preference", "0.2,0.3,0.5"],
            "has 3 entries but the task has 2",
        ),
        (["run", "--algo", "gapo", "--task", "zdt1", "--preference", "-1,2"], "negative"),
        (["run", "--algo", "gapo", "--task", "zdt1", "--preference", "0,0"], "all zeros"),
        (
            ["run", "--algo", "gapo", "--task", "zdt1", "--preference", "a,b"],
            "expected comma-separated floats",
        ),
        (["run", "--algo", "gapo", "--task", "zdt1", "--param", "p=3"], "field 'p'"),
        (["run", "--algo", "gapo", "--task", "zdt1", "--param", "p"], "expected NAME=VALUE"),
        (["run", "--algo", "gapo", "--task", "zdt1", "--task-param", "steps=-1"], "field 'steps'"),
        (["sweep", "--algo", "ls,rac0"], "unknown algorithm 'rac0'. Did you mean raco"),
        (["sweep", "--task", "zdt1", "--seeds", "x"], "expected comma-separated seeds or ranges"),
        (["sweep", "--task", "zdt1", "--seeds", "0,1-"], "got '1-'"),
        (["sweep", "--task", "zdt1", "--seeds", "--1"], "got '--1'"),
        (["sweep", "--task", "zdt1", "--seeds", "-1"], "0 <= seed < 2**32, got -1"),
        (["sweep", "--task", "zdt1", "--seeds", "5-2"], "the range '5-2' is empty"),
        (["sweep", "--task", "zdt1", "--seeds", "4294967290-4294967296"], "got 4294967296"),
        (["sweep", "--task", "zdt1", "--seeds", "0-4294967295"], "more than 100,000"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(cli, tmp_path, args, message):
    result = cli(*args, "--results-dir", str(tmp_path))
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("0,1,2", [0, 1, 2]), ("0-2,7", [0, 1, 2, 7]), (" 3 - 4 ,", [3, 4]), ("5-5", [5])],
)
def test_seeds_are_listed_or_given_as_ranges_with_both_ends(text, seeds):
    assert parse_seeds(text) == seeds


def test_a_preference_not_summing_to_one_is_normalised_with_a_notice(cli, tmp_path):
    result = cli(
        "run",
        "--algo",
        "ls",
        "--task",
        "zdt1",
        "--preference",
        "1,3",
        "--results-dir",
        str(tmp_path),
    )
    assert result.exit_code == 0
    assert "notice: preference [1.0, 3.0] sums to 4; normalised to [0.25, 0.75]" in result.stderr
    assert load_records(tmp_path).records[0].config.preference == [0.25, 0.75]


def test_a_diverging_run_exits_1_with_its_reason_and_keeps_the_record(cli, tmp_path):
    result = cli("run", "--algo", "nan-rule", "--task", "zdt1", "--results-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "run failed: diverged: step 0" in result.stderr
    assert load_records(tmp_path).records[0].status == "failed"


def test_a_malformed_sweep_file_names_the_field(cli, tmp_path):
    bad = tmp_path / "sweep.json"
    bad.write_text(json.dumps({"algorithms": ["ls"], "seeds": "zero"}))
    result = cli("sweep", "--config", str(bad), "--results-dir", str(tmp_path / "r"))
    assert result.exit_code == 2 and "field 'seeds'" in result.stderr
    bad.write_text("{oops")
    assert "not valid JSON" in cli("sweep", "--config", str(bad)).stderr


def test_sweep_then_leaderboard_end_to_end(cli, tmp_path):
    sweep_file = tmp_path / "sweep.json"
    sweep_file.write_text(json.dumps({
        "algorithms": ["ls", "mgda", "raco"], "tasks": ["zdt1"], "seeds": [0, 1],
        "partitions": 4,
    }))  # fmt: skip
    results, board = tmp_path / "results", tmp_path / "board"
    sweep = cli("sweep", "--config", str(sweep_file), "--results-dir", str(results))
    assert sweep.exit_code == 0, sweep.output
    assert "30 runs: 0 already done, 30 ok, 0 failed" in sweep.stdout
    (results / "0000000000000000.json").write_text("{corrupt")
    made = cli(
        "leaderboard", "--results-dir", str(results), "--out", str(board), "--partitions", "4"
    )
    assert made.exit_code == 0, made.output
    assert "0000000000000000.json" in made.stderr  # the corrupt file is named and skipped
    text = (board / "LEADERBOARD.md").read_text()
    assert "zdt1" in text and "raco" in text and "mgda" in text
    assert (board / "plots" / "zdt1.png").stat().st_size > 0
    check = cli(
        "leaderboard", "--results-dir", str(results), "--out", str(board), "--partitions", "4",
        "--check",
    )  # fmt: skip
    assert check.exit_code == 0, check.output
    (board / "LEADERBOARD.md").write_text(text.replace("raco", "racoon"))
    stale = cli(
        "leaderboard", "--results-dir", str(results), "--out", str(board), "--partitions", "4",
        "--check",
    )  # fmt: skip
    assert stale.exit_code == 1 and "stale" in stale.output


def test_an_unwritable_results_folder_fails_before_running(cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for command in (["run", "--algo", "ls", "--task", "zdt1"], ["sweep", "--task", "zdt1"]):
        result = cli(*command, "--results-dir", str(blocker / "results"))
        assert result.exit_code == 2
        assert f"results folder {blocker / 'results'} is not writable" in result.output


def test_reproduce_accepts_a_rerun_and_names_a_changed_record(cli, tmp_path):
    committed, rerun = tmp_path / "committed", tmp_path / "rerun"
    for folder in (committed, rerun):
        result = cli("sweep", "--algo", "ls,mgda", "--task", "zdt1", "--seeds", "0",
                     "--partitions", "2", "--results-dir", str(folder))  # fmt: skip
        assert result.exit_code == 0, result.output
    ok = cli("reproduce", "--results-dir", str(rerun), "--reference", str(committed))
    assert ok.exit_code == 0 and "6 re-run records match" in ok.output

    path = next(committed.glob("*.json"))
    data = json.loads(path.read_text())
    data["objectives"][0] += 1e-3  # a stale or nondeterministic record
    path.write_text(json.dumps(data))
    stale = cli("reproduce", "--results-dir", str(rerun), "--reference", str(committed))
    assert stale.exit_code == 1
    assert "1 of 6 re-run records differ" in stale.output and path.stem in stale.output


def test_migrate_fills_parameters_added_since_a_record_was_written(cli, tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    result = cli("run", "--algo", "ls", "--task", "zdt1", "--results-dir", str(old))
    assert result.exit_code == 0, result.output
    path = next(old.glob("*.json"))
    data = json.loads(path.read_text())
    del data["config"]["algorithm_params"]["order"]  # as written before `order` existed
    from moabench.runs.records import RunConfig

    data["key"] = RunConfig.model_validate(data["config"]).key()
    path.unlink()
    (old / f"{data['key']}.json").write_text(json.dumps(data))

    migrated = cli("migrate", "--results-dir", str(old), "--out", str(new))
    assert migrated.exit_code == 0 and "migrated 1 records" in migrated.output
    (record,) = load_records(new).records
    assert record.config.algorithm_params == {"order": "sum-then-normalize"}
    assert record.key != data["key"] and record.objectives == data["objectives"]
    rerun = cli("run", "--algo", "ls", "--task", "zdt1", "--results-dir", str(tmp_path / "rerun"))
    assert rerun.exit_code == 0
    check = cli("reproduce", "--results-dir", str(tmp_path / "rerun"), "--reference", str(new))
    assert check.exit_code == 0, check.output
