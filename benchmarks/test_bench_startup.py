"""Start-up: `moabench --help`, `moabench list` and `moabench list safety`, each in a fresh
interpreter as a user types them (target: `--help` under 1 s; figures in BENCHMARKS.md).

Run: pytest benchmarks/test_bench_startup.py --benchmark-only
"""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["list", "safety"]], ids=" ".join)
def test_startup(benchmark, argv):
    command = [sys.executable, "-m", "moabench", *argv]
    result = benchmark.pedantic(
        lambda: subprocess.run(command, capture_output=True, check=True),
        rounds=5,
        iterations=1,
        warmup_rounds=1,
    )
    assert result.stdout
