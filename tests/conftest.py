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
