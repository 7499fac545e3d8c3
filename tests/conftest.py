"""Shared fixtures. `nan-rule` is a test-only algorithm whose coefficients are NaN, to exercise the
divergence path (a run recorded as failed, the sweep going on)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from moabench import GramRule, register_algorithm


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
