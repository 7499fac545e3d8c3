"""Sweeps on a local Ray instance: the same records as the local executor, resumption, a worker
that dies (retried, or the sweep stopped without a record), and an address that does not
answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

from moabench.core.errors import ConfigError  # noqa: E402
from moabench.runs.records import load_records  # noqa: E402
from moabench.runs.sweep import SweepConfig, plan_sweep, run_sweep  # noqa: E402

PLUGIN = Path(__file__).parent / "data" / "crash_plugin"


def test_a_ray_sweep_writes_the_local_executors_records_and_resumes(tmp_path):
    plan = plan_sweep(
        SweepConfig(algorithms=["ls", "mgda"], tasks=["zdt1"], seeds=[0], partitions=2)
    )
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run_sweep(plan.configs, local, workers=1)
    summary = run_sweep(plan.configs, on_ray, workers=2, executor="ray")
    assert summary.ok == summary.total == 6
    ours = {r.key: r.objectives for r in load_records(on_ray).records}
    assert ours == {r.key: r.objectives for r in load_records(local).records}
    again = run_sweep(plan.configs, on_ray, workers=2, executor="ray")  # resume: nothing to do
    assert again.already_done == 6 and again.ok == 0


def test_a_dead_worker_is_retried_or_stops_the_sweep(tmp_path, install_plugin):
    """`crash` (a test plugin) kills its worker: once (then the retry succeeds) or always (then
    the sweep stops: a dead worker is not the algorithm failing, and gets no record); no record
    is lost or duplicated."""
    site = install_plugin(PLUGIN)
    script = """
import sys
from moabench.runs.records import load_records
from moabench.runs.sweep import SweepConfig, SweepStopped, plan_sweep, run_sweep
plan = plan_sweep(SweepConfig(algorithms=["crash", "ls"], tasks=["zdt1"], seeds=[0], partitions=1))
try:
    summary = run_sweep(plan.configs, sys.argv[1], workers=2, executor="ray")
except SweepStopped as stop:
    summary = stop.summary
    print("stopped:", stop.error)
records = load_records(sys.argv[1]).records
print(len(records), summary.ok, [(r.config.algorithm, r.status, r.reason) for r in records])
"""
    env = os.environ | {"PYTHONPATH": str(site)}

    once = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "once")], capture_output=True, text=True,
        env=env | {"MOABENCH_CRASH_ONCE": str(tmp_path / "crashed-once")}, check=True,
    )  # fmt: skip
    last = once.stdout.strip().splitlines()[-1]  # (Ray's raylet may log above it)
    assert last.startswith("4 4 "), once.stdout + once.stderr  # the retry succeeded

    always = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "always")], capture_output=True, text=True,
        env=env, check=True,
    )  # fmt: skip
    assert "stopped: crash on zdt1" in always.stdout, always.stdout + always.stderr
    assert "worker failure after 1 retries" in always.stdout
    records = always.stdout.strip().splitlines()[-1]
    assert "'crash'" not in records and "failed" not in records


def test_an_address_that_does_not_answer_is_a_clear_error(tmp_path):
    plan = plan_sweep(SweepConfig(algorithms=["ls"], tasks=["zdt1"], seeds=[0], partitions=1))
    with pytest.raises(ConfigError, match="could not connect to Ray address '127.0.0.1:1'"):
        run_sweep(plan.configs, tmp_path, executor="ray", ray_address="127.0.0.1:1")
    assert list(tmp_path.glob("*.json")) == []
