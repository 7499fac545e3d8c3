"""The GPU probe (benchmarks/gpu_probe.py) in its CPU mode, as CI runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).parent.parent / "benchmarks" / "gpu_probe.py"


def test_the_gpu_probe_runs_in_its_cpu_mode():
    result = subprocess.run(
        [sys.executable, str(PROBE), "--smoke"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["sampling_unchanged_by_checkpointing"] is True
    assert set(report["decode_ms_per_token"]) == {"unmerged", "merged"}
    assert all(v > 0 for v in report["projected_math_step_generation_minutes"].values())
    assert report["safety_step_with_reward_models"]["out_of_memory"] is False
    assert report["rehearsal"]["projected"]["peak_mb"] > 0
