"""Registries, plugins through entry points, and unsupported pairings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moabench import make_algorithm
from moabench.core.algorithm import GramRule, Paradigm, algorithms
from moabench.core.errors import ConfigError
from moabench.core.registry import DuplicateNameError, Registry, UnknownNameError
from moabench.core.task import tasks
from moabench.runs.runner import UnsupportedPairingError, resolve_config

PLUGIN = Path(__file__).parent / "data" / "example_plugin"


def test_unknown_names_list_close_matches_and_known_names():
    with pytest.raises(UnknownNameError) as info:
        algorithms.get("gapoo")
    message = str(info.value)
    assert "Did you mean gapo" in message and "Known:" in message and "raco" in message


def test_registering_a_different_class_under_a_taken_name_fails():
    registry: Registry = Registry("thing", "moabench.algorithms", "moabench.none")

    @registry.register("x")
    class A:  # noqa: B903
        pass

    with pytest.raises(DuplicateNameError, match="already registered"):

        @registry.register("x")
        class B:
            pass


def test_builtin_algorithms_and_tasks_are_registered():
    expected = {"ls", "mgda", "gapo", "p-gapo", "cagrad", "raco", "dynamic-weighting", "upgrad"}
    assert expected <= set(algorithms.names())
    assert {"zdt1", "zdt2", "fonseca", "cagrad-toy", "dtlz2"} <= set(tasks.names())


def test_bad_hyperparameters_name_the_field():
    with pytest.raises(ConfigError, match="algorithm 'gapo': field 'p'"):
        make_algorithm("gapo", [0.5, 0.5], p=3)
    with pytest.raises(ConfigError, match="field 'unknown'"):
        resolve_config("raco", "zdt1", [0.5, 0.5], algorithm_params={"unknown": 1})


def test_an_unsupported_pairing_is_a_clear_error(monkeypatch):
    class AnalyticOnly(GramRule):
        """Test-only rule without the analytic paradigm."""

        paradigms = frozenset({Paradigm.ONLINE})

    monkeypatch.setitem(algorithms._entries, "online-only", AnalyticOnly)
    with pytest.raises(UnsupportedPairingError, match="does not support analytic training"):
        resolve_config("online-only", "zdt1", [0.5, 0.5])


def test_a_third_party_plugin_works_in_every_command(tmp_path, install_plugin):
    """Install the example plugin package (entry points) and use it through the CLI."""
    site = install_plugin(PLUGIN)
    env = os.environ | {"PYTHONPATH": str(site)}
    moabench = [sys.executable, "-m", "moabench"]

    listing = subprocess.run(
        [*moabench, "list"], env=env, capture_output=True, text=True, check=True
    )
    assert "half-sum" in listing.stdout and "two-parabolas" in listing.stdout

    results = tmp_path / "results"
    run = subprocess.run(
        [*moabench, "run", "--algo", "half-sum", "--task", "two-parabolas", "--results-dir", str(results)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    sweep = subprocess.run(
        [*moabench, "sweep", "--algo", "half-sum,mgda", "--task", "two-parabolas", "--seeds", "0",
         "--partitions", "2", "--results-dir", str(results)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr
    assert len(list(results.glob("*.json"))) == 6  # the run above is one of the sweep's 2 x 3 runs
    board = subprocess.run(
        [*moabench, "leaderboard", "--results-dir", str(results), "--out", str(tmp_path / "board")],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert board.returncode == 0, board.stderr
    assert "half-sum" in (tmp_path / "board" / "LEADERBOARD.md").read_text()


@pytest.mark.slow
def test_a_third_party_steerable_method_runs_from_its_entry_point(tmp_path, install_plugin):
    """The plugin's steerable method trains the LS experts once and answers two preferences."""
    site = install_plugin(PLUGIN)
    env = os.environ | {"PYTHONPATH": str(site)}
    results = tmp_path / "results"
    for preference in ("0.3,0.7", "0.9,0.1"):
        run = subprocess.run(
            [sys.executable, "-m", "moabench", "run", "--algo", "tempered-mod", "--task", "safety",
             "--preference", preference, "--task-param", "steps=4", "--task-param",
             "n_eval_prompts=16", "--results-dir", str(results)],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "shared training (2 runs, trained once for every preference)" in run.stdout
    from moabench.runs.records import load_records

    written = load_records(results).records
    steered = [r for r in written if r.config.algorithm == "tempered-mod"]
    experts = [r for r in written if r.config.algorithm == "ls"]
    assert len(steered) == 2 and len(experts) == 2
    assert {s.key for s in steered[0].shared_training} == {r.key for r in experts}


def test_hyperparameters_resolve_default_factories():
    """Defaults built by a factory (a dict, a list) are reported as values, JSON included."""
    import json

    from moabench.core.task import tasks

    defaults = tasks.get("safety").hyperparameters()
    assert defaults["reward_models"] == {} and defaults["lm_eval_tasks"] == []
    json.dumps(defaults)
