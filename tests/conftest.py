"""Shared fixtures. `nan-rule` is a test-only algorithm whose coefficients are NaN, to exercise the
divergence path (a run recorded as failed, the sweep going on)."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from moabench import GramRule, register_algorithm
from moabench.language import tiny


@register_algorithm("nan-rule")
class NaNRule(GramRule):
    """Test-only: returns NaN coefficients."""

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        return np.full(len(gram), np.nan)


@pytest.fixture
def cli():
    """Invoke the CLI in-process: `cli("run", "--algo", ...)` -> click Result."""
    from moabench.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Reference policies are cached per test session, never in the user's ~/.cache."""
    import os

    previous = os.environ.get("MOABENCH_CACHE")
    os.environ["MOABENCH_CACHE"] = str(tmp_path_factory.mktemp("moabench-cache"))
    yield
    if previous is None:
        os.environ.pop("MOABENCH_CACHE", None)
    else:
        os.environ["MOABENCH_CACHE"] = previous


@pytest.fixture(scope="session")
def reference_scores():
    """`reference_scores(task_name)`: the reference policy's mean objectives on the task's
    evaluation prompts (cached for the session)."""
    from moabench import make_task

    @cache
    def scores(task_name: str) -> np.ndarray:
        task = make_task(task_name)
        tokenizer = tiny.task_tokenizer(task)
        policy = tiny.task_reference(task, tokenizer)
        return np.array(
            tiny.evaluate_policy(task, policy, tokenizer, tiny.evaluation_prompts(task))
        )

    return scores


@pytest.fixture
def install_plugin(tmp_path):
    """`install_plugin(folder)`: pip-install a test plugin package (its entry points included)
    into a fresh folder and return that folder, to put on PYTHONPATH."""

    def install(package: Path) -> Path:
        site = tmp_path / f"site-{package.name}"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
             "--no-build-isolation", "--target", str(site), str(package)],
            check=True,
        )  # fmt: skip
        return site

    return install
