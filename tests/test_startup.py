"""Start-up: `--help`, `list` and the error paths import none of the heavy libraries, and `list`
reads in an 80-column terminal. Each check runs `moabench` in a fresh interpreter, the only way to
see what a command imports."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "pandas", "scipy", "matplotlib", "datasets", "trl", "peft")

#: Runs the CLI with `argv`, then prints the heavy modules it imported (typer exits through
#: SystemExit, so they are printed at interpreter exit).
PROBE = """
import atexit, sys
atexit.register(lambda: print("IMPORTED", *sorted(
    m for m in {heavy} if m in sys.modules), file=sys.stderr))
sys.argv = ["moabench", *{argv}]
from moabench.cli import main
main()
"""


def moabench(*argv: str, columns: int = 80) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1"}
    code = PROBE.format(heavy=HEAVY, argv=list(argv))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def imported(result: subprocess.CompletedProcess) -> list[str]:
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("IMPORTED")]
    return line.split()[1:]


@pytest.mark.parametrize(
    ("argv", "exit_code"),
    [
        (["--help"], 0),
        (["list"], 0),
        (["list", "algorithms"], 0),
        (["list", "safety"], 0),
        (["list", "zdt1"], 0),
        (["list", "upgrad"], 0),
        (["list", "nope"], 2),
        (["run", "--help"], 0),
        (["sweep", "--help"], 0),
        (["leaderboard", "--help"], 0),
        (["run", "--algo", "nope", "--task", "zdt1"], 2),
        (["run", "--algo", "ls", "--task", "nope"], 2),
        (["run", "--algo", "ls", "--task", "zdt1", "--param", "nope=1"], 2),
        (["run", "--algo", "ls", "--task", "zdt1", "--preference", "a,b"], 2),
        (["run", "--algo", "modpo", "--task", "zdt1"], 2),
        (["sweep", "--algo", "nope"], 2),
        (["sweep", "--task", "nope"], 2),
        (["sweep", "--seeds", "x"], 2),
    ],
)
def test_a_command_that_runs_nothing_imports_no_heavy_library(argv, exit_code):
    result = moabench(*argv)
    assert result.returncode == exit_code, result.stderr
    assert imported(result) == []


def test_an_analytic_run_imports_torch_only(tmp_path):
    result = moabench("run", "--algo", "ls", "--task", "zdt1", "--task-param", "steps=2",
                      "--results-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert imported(result) == ["torch"]


@pytest.mark.parametrize("argv", [[], ["algorithms"], ["tasks"], ["safety"], ["zdt1"], ["gapo"]])
def test_list_fits_80_columns(argv):
    result = moabench("list", *argv)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and max(len(line.rstrip()) for line in lines) <= 80


def test_list_task_shows_its_objectives_paradigms_scales_parameters_and_algorithms():
    out = moabench("list", "safety").stdout
    for text in ("helpfulness (max)", "preference, online", "tiny, paper, small", "beta",
                 "0.1", "label_noise", "steps=1000", "modpo", "pama"):  # fmt: skip
        assert text in out, text
    analytic = moabench("list", "zdt1").stdout
    assert "learning_rate" in analytic and "0.2" in analytic and "Not on zdt1:" in analytic


def test_list_of_an_unknown_name_is_one_line_naming_the_known_ones():
    result = moabench("list", "zdt3")
    assert result.returncode == 2 and result.stdout == ""
    (line,) = [x for x in result.stderr.splitlines() if not x.startswith("IMPORTED")]
    assert line.startswith("error: unknown task or algorithm 'zdt3'. Did you mean zdt")
    assert "safety" in line and "upgrad" in line
