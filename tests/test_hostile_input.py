"""Hostile and unusual input (issue 11): literal text in messages, strict parameters, huge
preferences, record permissions, the install's extras, and defaults that leave committed files
alone."""

import json
import math
import os
import re
import warnings
from importlib.metadata import metadata, requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from pydantic import BaseModel

from moabench import GramRule, make_algorithm, make_task
from moabench.core.errors import ConfigError
from moabench.core.preferences import validate_preference
from moabench.runs.records import load_records


def test_extras_are_spelled_as_the_packages_spell_them():
    """pip 23.2 (Python 3.11's venv) skips an extra whose spelling differs from the package's
    metadata (`quadprog_projector` for `quadprog-projector`), and UPGrad then cannot import."""
    for line in requires("moabench"):
        requirement = Requirement(line)
        if requirement.extras and "extra ==" not in line:
            offered = metadata(requirement.name).get_all("Provides-Extra") or []
            assert requirement.extras <= set(offered), (line, offered)


@pytest.mark.parametrize("weights", [[1e308, 1e308], [1e308, 0.0], [3e307, 1e307]])
def test_huge_but_valid_preferences_are_normalised(weights):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = validate_preference(weights)
    scaled = [x / max(weights) for x in weights]
    assert w.tolist() == pytest.approx([x / sum(scaled) for x in scaled])


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_hyperparameters_are_errors(value):
    with pytest.raises(ConfigError, match="field 'c': Input should be a finite number"):
        make_algorithm("cagrad", [0.5, 0.5], c=value)
    with pytest.raises(ConfigError, match="field 'learning_rate': Input should be a finite"):
        make_task("zdt1", learning_rate=value)
    with pytest.raises(ConfigError, match="field 'beta': Input should be a finite"):
        make_task("safety", beta=value)


def test_a_plugin_params_model_that_forgot_extra_forbid_still_rejects_a_typo():
    class LooseParams(BaseModel):  # no model_config: pydantic ignores unknown fields
        scale: float = 1.0

    class Loose(GramRule):
        """A rule whose Params forgot extra="forbid"."""

        Params = LooseParams
        name = "loose-test-rule"

        def coefficients(self, gram, learning_rate=0.0):
            return self.preference * self.params.scale

    with pytest.raises(ConfigError, match="field 'scael': Extra inputs are not permitted"):
        Loose([0.5, 0.5], scael=2.0)
    with pytest.raises(ConfigError, match="finite"):
        Loose([0.5, 0.5], scale=float("inf"))
    assert Loose([0.5, 0.5], scale=2.0).params.scale == 2.0


def test_records_are_written_with_the_umask_s_permissions(cli, tmp_path):
    previous = os.umask(0o022)
    try:
        result = cli("run", "--algo", "ls", "--task", "zdt1", "--results-dir", str(tmp_path))
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    (path,) = tmp_path.glob("*.json")
    assert path.stat().st_mode & 0o777 == 0o644


def test_brackets_in_messages_are_printed_as_they_are(cli, tmp_path):
    result = cli("run", "--algo", "ls", "--task", "zdt1", "--preference", "inf,1",
                 "--results-dir", str(tmp_path))  # fmt: skip
    assert result.exit_code == 2
    assert "preference [inf, 1.0] has non-finite entries" in result.output
    helped = cli("sweep", "--help")
    assert "moabench[ray]" in re.sub(r"\s+", "", helped.output)


def test_run_says_which_paradigm_ran(cli, tmp_path):
    result = cli("run", "--algo", "gapo", "--task", "zdt1", "--results-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "(analytic training)" in " ".join(result.output.split())


def test_the_leaderboard_s_defaults_do_not_touch_a_leaderboard_folder(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    committed = tmp_path / "leaderboard" / "LEADERBOARD.md"
    committed.parent.mkdir()
    committed.write_text("committed standings\n")
    assert cli("run", "--algo", "ls", "--task", "zdt1").exit_code == 0
    result = cli("leaderboard")
    assert result.exit_code == 0, result.output
    assert committed.read_text() == "committed standings\n"
    assert (tmp_path / "results" / "leaderboard" / "LEADERBOARD.md").exists()
    assert len(load_records(tmp_path / "results").records) == 1


def _one_record(cli, folder, *args):
    result = cli("run", "--algo", "ls", "--task", "zdt1", "--results-dir", str(folder), *args)
    assert result.exit_code == 0, result.output
    (path,) = [p for p in folder.glob("*.json")]
    return path


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda r: r.update(objectives=[float("nan"), 1.0]), "objectives: not finite"),
        (lambda r: r.update(objectives=[0.1, 0.2, 0.3]), "objectives: expected 2 values"),
        (lambda r: r["trajectory"]["objectives"].append([1.0]), "trajectory point"),
        (lambda r: r.update(objectives=None), "objectives: expected 2 values"),
        (lambda r: r.update(status="failed", reason=None), "a failed run without a reason"),
        (lambda r: r["objective_space"].update(ideal=[0.0]), "objective_space"),
        (
            lambda r: r["objective_space"].update(names=["helpfulness", "harmlessness"]),
            "objective space names ['helpfulness', 'harmlessness'], but task 'zdt1' with these "
            "parameters has ['f1', 'f2']",
        ),
        (
            lambda r: r["objective_space"].update(maximize=[True, True], ideal=[2.0, 2.0]),
            "objective space maximize [True, True], but task 'zdt1'",
        ),
        (lambda r: r["objective_space"].update(nadir=[5.0, 5.0]), "objective space nadir"),
        (lambda r: r.update(paradigm="online"), "paradigm 'online', but these task parameters"),
    ],
)
def test_a_bad_record_is_skipped_with_a_warning_naming_its_file(cli, tmp_path, tamper, reason):
    good = tmp_path / "good"
    _one_record(cli, good, "--preference", "0.3,0.7")
    bad = _one_record(cli, tmp_path / "bad", "--preference", "0.6,0.4")
    record = json.loads(bad.read_text())
    tamper(record)
    bad.write_text(json.dumps(record))
    target = good / "contributed" / bad.name
    target.parent.mkdir()
    bad.replace(target)
    board = tmp_path / "board"
    result = cli("leaderboard", "--results-dir", str(good), "--out", str(board))
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert f"warning: skipped {target}" in output and reason in output
    table = (board / "LEADERBOARD.md").read_text()
    # one run, the good one: a one-point front of the 11-point grid, listed but not ranked
    assert "| - | ls | no complete front |" in table and "| 0 (+1 partial) | 0/1 |" in table


def test_a_sweep_reruns_an_unreadable_record_and_retries_failed_ones_when_asked(cli, tmp_path):
    sweep = ("sweep", "--algo", "ls", "--task", "zdt1", "--seeds", "0", "--partitions", "1",
             "--results-dir", str(tmp_path))  # fmt: skip
    assert cli(*sweep).exit_code == 0
    first, second = sorted(tmp_path.glob("*.json"))
    first.write_text("{ truncated")
    record = json.loads(second.read_text())
    record.update(status="failed", reason="error: ImportError: qpsolvers", objectives=None)
    second.write_text(json.dumps(record))
    again = cli(*sweep)
    assert "2 runs: 1 already done, 1 ok, 0 failed" in " ".join(again.output.split())
    assert json.loads(first.read_text())["status"] == "ok"
    assert json.loads(second.read_text())["status"] == "failed"
    retried = cli(*sweep, "--retry-failed")
    assert "2 runs: 1 already done, 1 ok, 0 failed" in " ".join(retried.output.split())
    assert json.loads(second.read_text())["status"] == "ok"


def test_a_sweep_into_the_committed_records_refuses_uncommitted_source(cli, monkeypatch):
    import moabench.cli
    from moabench.runs.records import committed_records_folder

    root = Path(moabench.cli.__file__).resolve().parents[1]
    target = root / "leaderboard" / "results" / "not-written-by-this-test"
    if not committed_records_folder(target):
        pytest.skip("moabench does not run from a git checkout here")
    monkeypatch.setattr(moabench.cli, "provenance", lambda: {"git_commit": "abc-dirty"})
    sweep = ("sweep", "--algo", "ls", "--task", "zdt1", "--seeds", "0", "--partitions", "1",
             "--results-dir", str(target))  # fmt: skip
    result = cli(*sweep)
    assert result.exit_code == 2
    assert "uncommitted changes" in result.output and "--allow-dirty" in result.output
    assert not target.exists()


def test_provenance_marks_uncommitted_source_as_dirty(tmp_path):
    from moabench.runs import records

    package = Path(records.__file__).resolve().parents[1]
    scratch = package / "untracked_scratch_module_for_test.py"
    records.provenance.cache_clear()
    clean = records._git_commit()
    if clean is None or clean.endswith("-dirty"):
        pytest.skip("not a clean git checkout")
    try:
        scratch.write_text("# an untracked file changes what runs\n")
        assert records._git_commit() == clean + "-dirty"
    finally:
        scratch.unlink()


# --- issue 22: data loss, setup failures, bad input, the hold-out class -------------------------


def test_the_leaderboard_never_deletes_a_file_it_did_not_write(cli, tmp_path):
    results = tmp_path / "results"
    for preference in ("0.3,0.7", "0.6,0.4"):
        _one_record(cli, results / preference, "--preference", preference)
    paper = tmp_path / "mypaper"
    (paper / "plots").mkdir(parents=True)
    figure, notes = paper / "plots" / "figure1.png", paper / "notes.md"
    figure.write_bytes(b"my figure")
    notes.write_text("my notes\n")
    for _ in range(2):  # the second one finds its own outputs of the first
        result = cli("leaderboard", "--results-dir", str(results), "--out", str(paper))
        assert result.exit_code == 0, result.output
    assert figure.read_bytes() == b"my figure" and notes.read_text() == "my notes\n"
    listed = json.loads((paper / ".moabench-outputs.json").read_text())
    assert "LEADERBOARD.md" in listed and "plots/figure1.png" not in listed
    check = cli("leaderboard", "--results-dir", str(results), "--out", str(paper), "--check")
    assert check.exit_code == 0, check.output  # the user's figure is not a stale plot
    # a plot the leaderboard wrote and no longer draws is removed; a hostile list never reaches
    # outside the folder
    (paper / "plots" / "retired.png").write_bytes(b"old")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep\n")
    manifest = paper / ".moabench-outputs.json"
    manifest.write_text(json.dumps(listed + ["plots/retired.png", "../outside.txt"]))
    assert cli("leaderboard", "--results-dir", str(results), "--out", str(paper)).exit_code == 0
    assert not (paper / "plots" / "retired.png").exists()
    assert outside.read_text() == "keep\n" and figure.exists()


def test_a_damaged_cached_reference_is_rebuilt(tmp_path, monkeypatch):
    from moabench import make_task
    from moabench.language import tiny

    monkeypatch.setenv("MOABENCH_CACHE", str(tmp_path / "cache"))
    task = make_task("safety")
    tokenizer = tiny.task_tokenizer(task)
    weights = {k: v.clone() for k, v in tiny.task_reference(task, tokenizer).state_dict().items()}
    (folder,) = (tmp_path / "cache" / "references").iterdir()
    (saved,) = folder.glob("*.safetensors")
    saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])  # an interrupted copy
    rebuilt = tiny.task_reference(task, tokenizer).state_dict()
    assert rebuilt.keys() == weights.keys()
    assert all(torch_equal(rebuilt[k], weights[k]) for k in weights)
    flipped = bytearray(saved.read_bytes())  # a damaged byte that still loads
    flipped[-1] ^= 0xFF
    saved.write_bytes(bytes(flipped))
    again = tiny.task_reference(task, tokenizer).state_dict()
    assert all(torch_equal(again[k], weights[k]) for k in weights)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def read_safety_pairs(dataset: Path):
    from moabench import make_task
    from moabench.language import hub

    task = make_task("safety", scale="small", dataset=str(dataset), n_pairs=4, n_eval_prompts=1)
    return hub.read_pairs(task.paper_setups["small"], task.params, task.space.names)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.jsonl", "", "the file has no rows"),
        ("blank.jsonl", "\n\n", "the file has no rows"),
        ("header.csv", "prompt,response_a,response_b,helpfulness\n", "the file has no rows"),
        ("empty.csv", "", "the file has no rows"),
        ("bad.jsonl", '{"prompt": "a"}\n{"prompt": bad}\n', "line 2, column 12: not valid JSON"),
        ("list.jsonl", '{"prompt": "a"}\n[1, 2]\n', "line 2: expected a JSON object, got list"),
    ],
)
def test_a_data_file_without_rows_or_with_a_bad_line_is_one_clear_error(
    tmp_path, name, content, message
):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError) as error:
        read_safety_pairs(path)
    assert str(path) in str(error.value) and message in str(error.value)
    assert "\n" not in str(error.value)


def test_csv_pairs_take_one_column_per_objective(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(
        "prompt,response_a,response_b,helpfulness,harmlessness\n"
        "p1,a1,b1,a,b\n"
        "p2,a2,b2,,a\n"  # unlabelled for helpfulness
        "p3,a3,b3,tie,\n"
    )
    pairs, skipped = read_safety_pairs(path)
    labels = {p: pairs.signs[:, i].tolist() for i, p in enumerate(pairs.prompts)}
    assert labels == {"p1": [1.0, -1.0], "p2": [0.0, 1.0], "p3": [0.0, 0.0]}
    assert skipped == {}
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("prompt,response_a,response_b,helpfulnes\np,a,b,a\n")
    with pytest.raises(ConfigError, match="no 'preferred' field and no column for any objective"):
        read_safety_pairs(wrong)
    bad_label = tmp_path / "label.csv"
    bad_label.write_text("prompt,response_a,response_b,helpfulness\np,a,b,yes\n")
    with pytest.raises(ConfigError, match="row 1: 'preferred' values must be 'a', 'b' or 'tie'"):
        read_safety_pairs(bad_label)


# The hold-out class: non-finite parameters, extreme preferences, damaged record files, through
# run, sweep, leaderboard and reproduce.

NON_FINITE = ["NaN", "nan", "Infinity", "-inf", "1e400"]


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_non_finite_parameters_are_one_line_errors(cli, tmp_path, value, command):
    base = ("run",) if command == "run" else ("sweep", "--seeds", "0", "--partitions", "1")
    for option in (f"--param=c={value}", f"--task-param=learning_rate={value}"):
        result = cli(*base, "--algo", "cagrad", "--task", "zdt1", option,
                     "--results-dir", str(tmp_path))  # fmt: skip
        assert result.exit_code == 2, result.output
        assert "Input should be a finite number" in result.output
    if command == "run":
        result = cli("run", "--algo", "ls", "--task", "zdt1", "--preference", f"{value},1",
                     "--results-dir", str(tmp_path))  # fmt: skip
        assert result.exit_code == 2 and "has non-finite entries" in result.output
    assert not list(tmp_path.glob("*.json"))


def test_non_finite_parameters_in_a_sweep_file_are_errors(cli, tmp_path):
    config = tmp_path / "sweep.json"
    config.write_text('{"algorithms": ["cagrad"], "tasks": ["zdt1"], "seeds": [0], '
                      '"algorithm_params": {"cagrad": {"c": NaN}}}')  # fmt: skip
    result = cli("sweep", "--config", str(config), "--results-dir", str(tmp_path / "r"))
    assert result.exit_code == 2 and "field 'c': Input should be a finite number" in result.output


@pytest.mark.parametrize("preference", ["1e-300,1", "0.9999999999999999,1e-16", "1e-320,1"])
@pytest.mark.parametrize("algorithm", ["ls", "mgda", "cagrad", "raco", "upgrad", "gapo"])
def test_extreme_preferences_give_finite_records(cli, tmp_path, preference, algorithm):
    result = cli("run", "--algo", algorithm, "--task", "zdt1", "--preference", preference,
                 "--task-param", "steps=10", "--results-dir", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    (record,) = load_records(tmp_path).records
    assert record.status == "ok" and all(math.isfinite(v) for v in record.objectives)


DAMAGED = {
    "empty": b"",
    "truncated": None,  # the first half of a real record
    "not UTF-8": b"\xff\xfe{",
    "deeply nested": b"[" * 100_000,
    "a huge integer": b'{"schema_version": ' + b"9" * 5000 + b"}",
    "not an object": b"[1, 2]",
    "null": b"null",
}


@pytest.mark.parametrize("damage", list(DAMAGED))
def test_a_damaged_record_file_is_handled_by_every_command(cli, tmp_path, damage):
    results = tmp_path / "results"
    good = _one_record(cli, results, "--preference", "0.3,0.7")
    damaged = _one_record(cli, tmp_path / "other", "--preference", "0.6,0.4")
    content = DAMAGED[damage]
    target = results / damaged.name
    target.write_bytes(damaged.read_bytes()[:200] if content is None else content)
    board = cli("leaderboard", "--results-dir", str(results), "--out", str(tmp_path / "board"))
    assert board.exit_code == 0, board.output
    assert f"warning: skipped {target}" in " ".join(board.output.split())
    check = cli("reproduce", "--results-dir", str(results), "--reference", str(results))
    assert check.exit_code == 1 and f"{target}: unreadable" in " ".join(check.output.split())
    as_reference = cli("reproduce", "--results-dir", str(tmp_path / "other"),
                       "--reference", str(results))  # fmt: skip
    assert as_reference.exit_code == 1 and "not in" in as_reference.output
    sweep = ("sweep", "--algo", "ls", "--task", "zdt1", "--seeds", "0", "--partitions", "1",
             "--results-dir", str(tmp_path / "sweep"))  # fmt: skip
    assert cli(*sweep).exit_code == 0
    first = sorted((tmp_path / "sweep").glob("*.json"))[0]
    first.write_bytes(first.read_bytes()[:200] if content is None else content)
    resumed = cli(*sweep)
    assert resumed.exit_code == 0, resumed.output
    assert "2 runs: 1 already done, 1 ok" in " ".join(resumed.output.split())
    assert load_records(tmp_path / "sweep").skipped == []  # a damaged file is replaced
    rerun = cli("run", "--algo", "ls", "--task", "zdt1", "--preference", "0.6,0.4",
                "--results-dir", str(results))  # fmt: skip
    assert rerun.exit_code == 0, rerun.output
    assert load_records(results).skipped == [] and good.exists()


def test_a_record_that_cannot_be_written_is_one_line_naming_it(cli, tmp_path):
    from moabench.runs.runner import resolve_config

    blocked = tmp_path / f"{resolve_config('ls', 'zdt1').key()}.json"
    blocked.mkdir()
    result = cli("run", "--algo", "ls", "--task", "zdt1", "--results-dir", str(tmp_path))
    assert result.exit_code == 1
    assert f"error: cannot write the record {blocked}: Is a directory" in " ".join(
        result.output.split()
    )
    assert not list(tmp_path.glob(".*.tmp"))
