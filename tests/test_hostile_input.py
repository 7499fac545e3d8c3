"""Hostile and unusual input (issue 11): literal text in messages, strict parameters, huge
preferences, record permissions, the install's extras, and defaults that leave committed files
alone."""

import json
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
